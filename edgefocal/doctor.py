"""`edgefocal doctor`: which targets this machine can build and run, and what to install if not."""
from __future__ import annotations

from edgefocal.data import FASHION_MNIST_DIR
from edgefocal.backends import extra, get_backend, names


def diagnose() -> list[dict]:
    rows = []
    for name in names():
        try:
            a = get_backend(name).availability()
            rows.append({"target": name, "build": a.can_build, "run": a.can_run, "detail": a.detail, "fix": a.fix})
        except ImportError as e:  # the target module itself failed to import: our bug or a broken install
            rows.append({"target": name, "build": False, "run": False, "detail": f"import failed: {e}",
                         "fix": f"pip install 'edgefocal[{extra(name)}]'"})
    return rows


def extras() -> list[tuple[str, str]]:
    import torch

    out = [("CUDA GPU", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (reference runs on the CPU)")]
    have = (FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists()
    out.append(("Fashion-MNIST", str(FASHION_MNIST_DIR) if have else "missing: apt-get install dataset-fashion-mnist"))
    return out


def render(console) -> int:
    from rich.table import Table

    table = Table(title="edgefocal doctor")
    for col in ("target", "build", "run", "detail", "fix"):
        table.add_column(col)
    rows = diagnose()
    for r in rows:
        table.add_row(r["target"], "yes" if r["build"] else "[red]no[/red]", "yes" if r["run"] else "[yellow]no[/yellow]",
                      r["detail"], r["fix"])
    console.print(table)
    for k, v in extras():
        console.print(f"{k}: {v}")
    return 0
