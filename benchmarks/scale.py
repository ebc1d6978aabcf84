"""Build time and memory against the size of the eval set: `python -m edgefocal build` of focalnet_tiny_srf
(224², random weights) and of the embedded default (32², trained) on 200, 2000 and 10000 Fashion-MNIST test
images, calibrated on 300 train images, both read from PNG ImageFolders, for OpenVINO, ONNX Runtime and TensorRT
with the default recipe (mixed-precision search on). Each build is a process of its own: its wall time and the
peak resident memory of its whole process tree (sampled every 0.2 s) are measured from outside, its stages'
time and memory read from its report.json.

    python benchmarks/scale.py           # writes benchmarks/scale.md and benchmarks/scale.svg (one run, whole files)
    python benchmarks/scale.py --models default --sizes 200,2000 --out /tmp/scale.md      # a subset

The plot goes next to the markdown (same name, .svg). The run writes its ImageFolders once, to a temporary
directory; each build's output is removed once its figures are read, the ImageFolders at the end."""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` beside this file, also when imported by tests
from common import header, write  # noqa: E402

from edgefocal.recipe import REPO_ROOT, load_recipe, set_dotted  # noqa: E402
from edgefocal.stages import tree_and_root_rss  # noqa: E402

OUT = Path(__file__).with_suffix(".md")
DEFAULT_RECIPE = REPO_ROOT / "recipes" / "default.yaml"
SIZES = (200, 2000, 10000)
TARGETS = ("openvino", "onnxruntime", "tensorrt")
CALIBRATION = 300
TEST_SPLIT = 10000  # Fashion-MNIST's test images: the largest eval set there is
SAMPLE_S = 0.2


@dataclass(frozen=True)
class Model:
    title: str
    flags: tuple[str, ...]  # `edgefocal build` flags that pick the model
    overrides: dict = field(default_factory=dict)  # dotted fields set on recipes/default.yaml for this model
    note: str = ""


MODELS = {
    "focalnet_tiny_srf": Model(
        "focalnet_tiny_srf (224², random weights)", ("--model", "focalnet_tiny_srf", "--num-classes", "10"),
        # random weights: FP32's top-1 is chance and INT8 flips near-ties, so the accuracy gates would only judge
        # noise; min_agreement stays set (low) because the search's "auto" target is derived from it
        {"gates.min_agreement": 0.5, "gates.max_top1_drop": None, "gates.require_consistent_batches": False},
        "Random weights: no model hub can be reached here, so no pretrained checkpoint. Its time and memory are "
        "the figures; its top-1 and agreement mean nothing, so its accuracy gates are relaxed (min_agreement 0.5, "
        "from which the search's \"auto\" target follows, so the search runs its sensitivity scan and stops; no "
        "top-1 bound; batch consistency not required)."),
    "default": Model(
        "edgefocal-fmnist (the embedded default, 32², trained)", (), {},
        "The default recipe as it is, gates included: a non-zero exit is a gate failing, as a user would see it."),
}


@dataclass
class Build:
    """One `edgefocal build` process and what was measured of it."""

    model: str
    size: int
    command: list[str]
    exit: int | None  # None: killed at the timeout
    seconds: float
    peak_tree_mb: float  # summed RSS of the build process and all its descendants, at the sampled peak
    peak_main_mb: float  # the build process alone
    stages: list[dict] | None = None  # report.json's stages.stages, where the build wrote one
    stages_peak_mb: float | None = None  # report.json's stages.peak_rss_mb
    report_seconds: float | None = None  # report.json's seconds: the build's own time, start to report
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit == 0


# --- data: Fashion-MNIST PNGs in ImageFolder trees, written once ---

def write_imagefolder(root: Path, dataset, indices) -> None:
    """PNGs in one sub-folder per class, named by class index (tests/imagefolders.py's layout)."""
    for i in indices:
        path = root / str(int(dataset.labels[i])) / f"{int(i):05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        dataset.load(int(i)).save(path)


def write_data(root: Path, calibration_pool: int, sizes: list[int]) -> tuple[Path, dict[int, Path]]:
    """calibration/ from the train split, eval-N/ per size from the test split, all class-balanced (seed 0)."""
    from edgefocal.data import balanced_subset, fashion_mnist

    train, test = fashion_mnist("train"), fashion_mnist("test")
    write_imagefolder(root / "calibration", train, balanced_subset(train.labels, calibration_pool, seed=0))
    evals = {}
    for n in sizes:
        write_imagefolder(root / f"eval-{n}", test, balanced_subset(test.labels, n, seed=0))
        evals[n] = root / f"eval-{n}"
    return root / "calibration", evals


# --- recipes and commands ---

def recipe_for(key: str, overrides: dict, workdir: Path) -> Path:
    """recipes/default.yaml itself, or a copy of it with `overrides` set (validated now, not minutes later)."""
    if not overrides:
        return DEFAULT_RECIPE
    path = workdir / f"{key}.yaml"
    path.write_text(yaml.safe_dump(set_dotted(yaml.safe_load(DEFAULT_RECIPE.read_text()), overrides),
                                   sort_keys=False))
    load_recipe(path)
    return path


def build_command(recipe: Path, model: Model, targets: list[str], calib_dir: Path, calib_size: int,
                  eval_dir: Path, output: Path) -> list[str]:
    return [sys.executable, "-m", "edgefocal", "build", "--recipe", str(recipe), *model.flags,
            "--target", ",".join(targets), "--calib-dir", str(calib_dir), "--calib-size", str(calib_size),
            "--eval-dir", str(eval_dir), "--output", str(output), "--quiet"]


def shown(command: list[str], workdir: Path) -> str:
    """A command as the .md shows it: `python` for this interpreter, $SCALE for the run's temporary directory."""
    text = shlex.join(["python", *command[1:]])
    return text.replace(str(workdir), "$SCALE")


# --- one build, measured from outside ---

def run_measured(command: list[str], log: Path, timeout_s: float | None) -> tuple[int | None, float, float, float]:
    """(exit code or None at the timeout, wall seconds, peak tree RSS MB, peak build-process RSS MB)."""
    import psutil

    peak_tree = peak_main = 0
    with open(log, "w") as out:
        started = time.perf_counter()
        popen = subprocess.Popen(command, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
        proc = psutil.Process(popen.pid)
        code: int | None = None
        while True:
            tree, main = tree_and_root_rss(proc)
            peak_tree, peak_main = max(peak_tree, tree), max(peak_main, main)
            try:
                code = popen.wait(timeout=SAMPLE_S)
                break
            except subprocess.TimeoutExpired:
                pass
            if timeout_s is not None and time.perf_counter() - started > timeout_s:
                _kill_tree(proc)
                popen.wait()
                code = None
                break
        seconds = time.perf_counter() - started
    return code, seconds, peak_tree / 2**20, peak_main / 2**20


def _kill_tree(proc) -> None:
    """The build this script started, and what it started."""
    import psutil

    try:
        victims = [*proc.children(recursive=True), proc]
    except psutil.Error:
        return
    for p in victims:
        try:
            p.kill()
        except psutil.Error:
            pass


def stages_of(report: dict) -> tuple[list[dict] | None, float | None]:
    """(report.json's "stages": [{name, seconds, peak_rss_mb, running?}], its whole-build "peak_rss_mb"), also
    from the nested layout {"stages": {"stages": [...], "peak_rss_mb"}}; (None, None) for a report without them
    (edgefocal before edgefocal/stages.py)."""
    stages = report.get("stages")
    if isinstance(stages, dict):
        rows = stages.get("stages")
        return (rows if isinstance(rows, list) else None), stages.get("peak_rss_mb")
    if isinstance(stages, list):
        return stages, report.get("peak_rss_mb")
    return None, None


def stage_name(stage: dict) -> str:
    """Its name; 'write (so far)' for the stage still running when the report was written (report.py's label)."""
    return str(stage.get("name", "?")) + (" (so far)" if stage.get("running") else "")


def error_of(log: Path) -> str:
    """The build's `error: ...` line, else its last line."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["no output"])[-1][:300]


def measure(key: str, size: int, command: list[str], output: Path, log: Path, timeout_s: float | None) -> Build:
    code, seconds, peak_tree, peak_main = run_measured(command, log, timeout_s)
    b = Build(key, size, command, code, seconds, peak_tree, peak_main)
    report = output / "report.json"
    if report.is_file():  # also after a gate failed: the output is written before the gates decide the exit
        data = json.loads(report.read_text())
        b.stages, b.stages_peak_mb = stages_of(data)
        b.report_seconds = data.get("seconds")
    if code != 0:
        b.error = f"killed after {timeout_s:.0f} s (--timeout)" if code is None else error_of(log)
    shutil.rmtree(output, ignore_errors=True)  # 224² artifacts are large; only the figures are kept
    return b


# --- the markdown and the plot ---

def mb(v: float | None) -> str:
    return "–" if v is None else f"{v:,.0f}"


def sec(v: float | None) -> str:
    return "–" if v is None else f"{v:,.1f}"


def exit_text(b: Build) -> str:
    if b.exit is None:
        return "timeout"
    return {0: "0", 1: "1 (gates)", -9: "-9 (killed)"}.get(b.exit, str(b.exit))


def build_table(builds: list[Build]) -> list[str]:
    base = builds[0]  # the smallest eval set of the run
    lines = [f"| eval images | exit | wall time (s) | peak RSS, process tree (MB) | × the {base.size}-image build | "
             "peak RSS, build process alone (MB) |", "|---|---|---|---|---|---|"]
    for b in builds:
        ratio = f"{b.peak_tree_mb / base.peak_tree_mb:.2f}×" if base.peak_tree_mb else "–"
        lines.append(f"| {b.size:,} | {exit_text(b)} | {b.seconds:,.0f} | {mb(b.peak_tree_mb)} | {ratio} | "
                     f"{mb(b.peak_main_mb)} |")
    failed = [b for b in builds if not b.ok]
    if failed:
        lines += [""] + [f"- {b.size:,} images, exit {exit_text(b)}: {b.error}" for b in failed]
    return lines


def stage_table(builds: list[Build]) -> list[str]:
    with_stages = [b for b in builds if b.stages]
    if not with_stages:
        return ["Per stage: none of these builds' report.json has a \"stages\" key (this edgefocal does not "
                "write per-stage figures yet, or no report was written), so only whole-build figures are given."]
    names: list[str] = []
    for b in with_stages:
        names += [n for n in map(stage_name, b.stages) if n not in names]
    head = "| stage | " + " | ".join(f"{b.size:,}: s | {b.size:,}: peak RSS MB" for b in with_stages) + " |"
    lines = ["Per stage, from each build's report.json: the build's own measurement, wall seconds and the peak RSS "
             "of its process tree during the stage (edgefocal/stages.py: sampled, with getrusage's high-water "
             "marks as a floor); the last row is the report's whole-build figures.", "", head,
             "|---|" + "---|---|" * len(with_stages)]
    for name in names:
        cells = []
        for b in with_stages:
            s = next((s for s in b.stages if stage_name(s) == name), {})
            cells += [sec(s.get("seconds")), mb(s.get("peak_rss_mb"))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| whole build (report) | " + " | ".join(
        f"{sec(b.report_seconds)} | {mb(b.stages_peak_mb)}"
        for b in with_stages) + " |")
    missing = [b for b in builds if not b.stages]
    if missing:
        lines += ["", "No per-stage figures for: " + ", ".join(f"{b.size:,} images" for b in missing) + "."]
    return lines


def plot(results: dict[str, list[Build]], path: Path) -> None:
    """Peak RSS (process tree) and wall time against the eval set's size, one line per model; a red × marks a
    build that did not exit 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "edgefocal-scale", "svg.fonttype": "none"})  # same run, same bytes
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    sizes = sorted({b.size for builds in results.values() for b in builds})
    failed_labelled = False  # the legend names the red × once
    for key, builds in results.items():
        xs = [b.size for b in builds]
        for ax, ys in zip(axes, ([b.peak_tree_mb for b in builds], [b.seconds for b in builds])):
            ax.plot(xs, ys, marker="o", label=MODELS[key].title)
            bad = [(b.size, y) for b, y in zip(builds, ys) if not b.ok]
            if bad:
                first = ax is axes[0] and not failed_labelled
                ax.scatter(*zip(*bad), marker="x", color="red", s=60, zorder=3, label="exit ≠ 0" if first else None)
                failed_labelled = failed_labelled or first
    for ax, label in zip(axes, ("peak RSS, whole process tree (MB)", "wall time (s)")):
        ax.set_xscale("log")
        ax.set_xticks(sizes, [f"{s:,}" for s in sizes])
        ax.minorticks_off()
        ax.set_xlabel("eval images")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata={"Date": None} if path.suffix == ".svg" else None)
    plt.close(fig)


def commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short=12", "HEAD") or "unknown (not a git checkout)"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return head + (" with uncommitted changes to tracked files" if dirty else "")


def options_text(args, search: bool, full: bool) -> str:
    sets = ", ".join(f"{k}={json.dumps(v)}" for k, v in args.set.items()) or "none"
    text = (f"Options: models {', '.join(args.models)}; eval sizes {', '.join(f'{n:,}' for n in args.sizes)}; "
            f"targets {', '.join(args.targets)}; {args.calib_size} calibration images; mixed-precision search "
            f"{'on' if search else 'off'}; recipe fields set on every build (--set): {sets}; "
            f"per-build timeout {f'{args.timeout:.0f} s' if args.timeout else 'none'}.")
    return text + (" That is the full default matrix." if full else
                   " That is NOT the full default matrix (`python benchmarks/scale.py` with no options runs it).")


def render(args, results: dict[str, list[Build]], plot_path: Path, workdir: Path, calibration_pool: int,
           recipes: dict[str, Path], search: bool, seconds: float) -> list[str]:
    import psutil

    full = (args.models == list(MODELS) and args.sizes == list(SIZES) and args.targets == list(TARGETS)
            and args.calib_size == CALIBRATION and search and not args.set and not args.timeout)
    lines = header("Build time and memory against the eval set's size") + [
        f"Commit {getattr(args, 'commit', None) or commit()}; {psutil.virtual_memory().total / 2**30:.1f} GiB of memory; the run took "
        f"{seconds / 60:.0f} min.", "",
        options_text(args, search, full), "",
        "Each build is `python -m edgefocal build` in a process of its own, run one after another. **Wall time** "
        "is that process's, start to exit. **Peak RSS, process tree** is the largest sum of the resident memory "
        f"of the build process and all its descendants (the serving stage's fresh processes), sampled every "
        f"{SAMPLE_S} s: pages shared between processes count once per process (a fork of the build not yet "
        "exec'd, as OpenVINO's telemetry makes, counts only its own pages), and a spike shorter than the "
        "sampling interval can be missed. **× the N-image build** divides it by the same model's build on "
        "the smallest eval set of this run. Per-stage figures are the build's own, read from its report.json.", "",
        f"Data: Fashion-MNIST PNG ImageFolders written once for this run to a temporary directory ($SCALE, "
        f"removed afterwards). `calibration/` holds {calibration_pool:,} class-balanced train images: the build "
        f"calibrates on {args.calib_size} of them"
        + (", and the mixed-precision search draws its held-out selection and validation images from the rest, "
           "as it draws them from the train split with the default recipe" if calibration_pool > args.calib_size
           else "") +
        f"; `eval-N/` holds N class-balanced test images ({TEST_SPLIT:,}: the whole test split). Each model's "
        "own data config resizes them (focalnet_tiny_srf: 3×224×224; the default: 1×32×32).", "",
        f"![peak RSS and wall time against the eval set's size]({plot_path.name})", ""]
    for key, builds in results.items():
        model = MODELS[key]
        recipe = recipes[key]
        fields = ", ".join(f"{k}: {json.dumps(v)}" for k, v in _overrides(key, args).items())
        recipe_text = "recipes/default.yaml" if recipe == DEFAULT_RECIPE else f"recipes/default.yaml with {fields}"
        lines += [f"## {model.title}", "", model.note, "", f"Recipe: {recipe_text}.", ""]
        lines += build_table(builds) + [""] + stage_table(builds) + [""]
    lines += ["## Commands", "", f"`python` is {sys.executable}; $SCALE was {workdir}.", "", "```"]
    lines += [shown(b.command, workdir) for builds in results.values() for b in builds]
    return lines + ["```"]


def _overrides(key: str, args) -> dict:
    """The recipe fields this model's builds set on recipes/default.yaml: the model's own, then --set's."""
    return {**MODELS[key].overrides, **args.set}


# --- the run ---

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="Build time and memory (whole process tree, per stage) against the "
                                 "eval set's size; writes the whole markdown file and its plot.",
                                 epilog="With no options: the full matrix, written to benchmarks/scale.md.")
    ap.add_argument("--models", default=",".join(MODELS), type=_names(MODELS),
                    help=f"comma-separated, of: {', '.join(MODELS)} (default: both)")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), type=_sizes,
                    help=f"eval-set sizes, comma-separated, each 1..{TEST_SPLIT} (default: %(default)s)")
    ap.add_argument("--targets", default=",".join(TARGETS), type=_names(TARGETS),
                    help="build targets, comma-separated (default: %(default)s)")
    ap.add_argument("--calib-size", type=int, default=CALIBRATION, help="calibration images (default: %(default)s)")
    ap.add_argument("--no-search", action="store_true", help="the preset plan (quantize.target_agreement: null)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="a recipe field for every build, VALUE in YAML, e.g. bench.rounds=1 (repeatable)")
    ap.add_argument("--timeout", type=float, help="seconds a build may run before it is killed (default: none)")
    ap.add_argument("--out", type=Path, default=OUT, help="the markdown; the plot goes beside it as .svg")
    args = ap.parse_args(argv)
    sets = {}
    for item in args.set:
        name, eq, value = item.partition("=")
        if not eq or not name:
            ap.error(f"--set {item}: expected FIELD=VALUE, e.g. bench.rounds=1")
        sets[name.strip()] = yaml.safe_load(value)
    if args.no_search:
        sets["quantize.target_agreement"] = None
    args.set = sets
    return args


def _names(known):
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"{', '.join(unknown) or 'nothing'}: use some of {', '.join(known)}")
        return names
    return parse


def _sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a comma-separated list of integers") from None
    if not sizes or sizes[0] < 1 or sizes[-1] > TEST_SPLIT:
        raise argparse.ArgumentTypeError(f"eval sizes are 1..{TEST_SPLIT} (the test split), got {text}")
    return sizes


def main(argv=None) -> int:
    args = parse_args(argv)
    args.commit = commit()  # now: the plot this run writes would make the tree look edited at the end
    started = time.perf_counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)  # now, not after hours of builds
    plot_path = args.out.with_suffix(".svg")
    shared = load_recipe(DEFAULT_RECIPE, args.set)
    search = shared.precision == "int8" and shared.quantize.target_agreement is not None
    pool = args.calib_size + (shared.quantize.selection_size + shared.quantize.validation_size if search else 0)
    results: dict[str, list[Build]] = {}
    with tempfile.TemporaryDirectory(prefix="edgefocal-scale-") as tmp:
        workdir = Path(tmp)
        recipes = {key: recipe_for(key, _overrides(key, args), workdir) for key in args.models}
        print(f"writing ImageFolders to {workdir} ({pool} calibration, eval {args.sizes})", flush=True)
        calib_dir, eval_dirs = write_data(workdir, pool, args.sizes)
        for key in args.models:
            results[key] = []
            for n in args.sizes:
                output = workdir / f"build-{key}-{n}"
                command = build_command(recipes[key], MODELS[key], args.targets, calib_dir, args.calib_size,
                                        eval_dirs[n], output)
                print(f"{key}, {n} eval images: {shown(command, workdir)}", flush=True)
                b = measure(key, n, command, output, workdir / f"build-{key}-{n}.log", args.timeout)
                print(f"  exit {exit_text(b)}, {b.seconds:.0f} s, peak RSS (tree) {b.peak_tree_mb:.0f} MB"
                      + (f": {b.error}" if b.error else ""), flush=True)
                results[key].append(b)
        lines = render(args, results, plot_path, workdir, pool, recipes, search, time.perf_counter() - started)
    plot(results, plot_path)
    write(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
