"""``bash scripts/test``, the README's test command, on a machine that lacks tools."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bare_path(tmp_path: Path) -> str:
    """A PATH holding only what the script's first step needs (no redis, chromium, g++),
    in a directory an unprivileged user can read."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(mode=0o755)
    for tool in ("bash", "dirname"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    return str(bin_dir)


def test_non_root_without_tools_stops_with_the_apt_get_line():
    home = Path(tempfile.mkdtemp(prefix="fanwire-bare-"))
    home.chmod(0o755)
    env = {"PATH": _bare_path(home), "HOME": str(home)}
    command = [shutil.which("bash"), str(ROOT / "scripts" / "test"), "-k", "nothing"]
    if os.geteuid() == 0:  # run it as an unprivileged user, as a newcomer would
        command = [
            shutil.which("setpriv"),
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            *command,
        ]
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    finally:
        shutil.rmtree(home)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "apt-get install -y --no-install-recommends redis-server chromium g++" in result.stderr
    ), result.stderr
    assert "pytest" not in result.stdout  # it stopped before installing or testing
