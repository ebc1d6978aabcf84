"""The CI workflow (not run here): a CPU and a Jetson job each gate a matrix build against main's baseline."""
from pathlib import Path

import yaml

WORKFLOW = Path(__file__).resolve().parent.parent / ".github" / "workflows" / "edgefocal-gate.yml"


def steps(job: dict) -> str:
    return "\n".join(str(s.get("run", "")) + str(s.get("with", "")) for s in job["steps"])


def test_cpu_and_jetson_jobs_gate_against_mains_baseline():
    wf = yaml.safe_load(WORKFLOW.read_text())
    cpu, jetson = wf["jobs"]["cpu"], wf["jobs"]["jetson"]
    assert "self-hosted" in jetson["runs-on"] and "jetson" in jetson["runs-on"]
    assert "--target tensorrt --require-engine" in steps(jetson) and "--system-site-packages" in steps(jetson)
    for job in (cpu, jetson):
        text = steps(job)
        assert "edgefocal matrix" in text and "--baseline baseline" in text and "fetch-baseline.sh" in text
        assert "GITHUB_STEP_SUMMARY" in text and "gh pr comment" in text
        keep = [s for s in job["steps"] if "baseline-" in str(s.get("with", {}).get("name", ""))]
        assert keep and keep[0]["if"] == "success() && github.ref == 'refs/heads/main'"
        assert keep[0]["with"]["path"] == "gate-out/*/report.json"
    assert wf["concurrency"]["cancel-in-progress"] is True
    assert (WORKFLOW.parent / "fetch-baseline.sh").stat().st_mode & 0o111
