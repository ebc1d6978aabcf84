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


def test_on_main_the_matrix_is_linked_to_the_history_made_from_its_reports():
    """history.sh charts this run's reports, so the matrix builds first; the same matrix then runs again with
    --history (same recipes and flags: every entry resumes from its done marker, nothing is rebuilt) and its
    matrix.html travels with the charts it links to, in one artifact."""
    wf = yaml.safe_load(WORKFLOW.read_text())
    for job in (wf["jobs"]["cpu"], wf["jobs"]["jetson"]):
        names = [s.get("name", "") for s in job["steps"]]
        build = next(s for s in job["steps"] if s.get("id") == "matrix")
        history = next(s for s in job["steps"] if "history.sh" in str(s.get("run", "")))
        relink = next(s for s in job["steps"] if "--history" in str(s.get("run", "")))
        reports = next(s for s in job["steps"] if "matrix.*" in str(s.get("with", {}).get("path", "")))
        charts = next(s for s in job["steps"] if "edgefocal-history-" in str(s.get("with", {}).get("name", "")))
        order = [names.index(s["name"]) for s in (build, reports, history, relink, charts)]
        assert order == sorted(order)  # the reports artifact keeps the matrix without links to files it lacks
        first = " ".join(build["run"].split()).split("edgefocal matrix ")[1].replace(' "${base[@]}"', "")
        again = " ".join(relink["run"].split()).split("edgefocal matrix ")[1]
        assert again == first + " --history history-out"  # same entries, same keys: resumed, not rebuilt
        assert relink["if"].startswith("always() && steps.matrix.outcome == 'success'")  # linked on drift too
        assert "refs/heads/main" in relink["if"] and "hashFiles('history-out/*/history.html')" in relink["if"]
        paths = charts["with"]["path"].split()
        assert "gate-out/matrix.html" in paths and "history-out/*/history.html" in paths
    assert "history-out/$entry" in (WORKFLOW.parent / "history.sh").read_text()  # DIR/<entry>/history.html
