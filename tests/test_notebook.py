"""The exploration notebook runs top to bottom, headless, from its own folder (Jupyter's convention)."""

from pathlib import Path

import nbformat
from conftest import REPO
from nbclient import NotebookClient


def test_explore_notebook_executes(shared_data):
    path = REPO / "notebooks" / "explore.ipynb"
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "Majority-class accuracy on validation" in text
    assert "misclassified" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # token lengths, learning curves, confusion matrix
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert Path(path.parent / "runs").is_dir()
