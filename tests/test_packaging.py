"""What `pip install .` (not editable) installs: every module of the package and its subpackages, and tune's
search spaces. An editable install, as the tests run, would not notice a subpackage left out."""

import shutil
import subprocess
import sys
import zipfile

from conftest import REPO


def test_the_wheel_holds_every_module_and_the_search_spaces(tmp_path):
    # Built from a copy: a build/ or egg-info left in the checkout would fill in what the configuration leaves out.
    source = tmp_path / "source"
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "lightning_albert", source / "lightning_albert", ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("lightning_albert-*.whl")
    packed = set(zipfile.ZipFile(wheel).namelist())
    package = REPO / "lightning_albert"
    sources = {p.relative_to(REPO).as_posix() for p in package.rglob("*") if p.suffix in (".py", ".yaml")}
    assert "lightning_albert/tune/search_spaces/offline.yaml" in sources
    assert sources - packed == set()
