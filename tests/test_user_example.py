"""The user's example test module (examples/user_app/test_user_app.py) passes, as a user
would run it: its own pytest run, with nothing but the installed plugin."""

from pathlib import Path

from conftest import plugin_autoloaded

USER_TEST = Path(__file__).resolve().parent.parent / "examples" / "user_app" / "test_user_app.py"


def test_user_stress_example_passes_at_full_scale(pytester):
    load = [] if plugin_autoloaded() else ["-p", "fanwire.testing.plugin"]
    result = pytester.runpytest_subprocess(str(USER_TEST), "-s", "-p", "no:cacheprovider", *load)
    result.assert_outcomes(passed=1)
    assert result.ret == 0  # also: no process or port left behind at session end
    result.stdout.fnmatch_lines(
        [
            "*500 SSE + 500 WS clients (+2 stalled), 1000/1000 published on 'quotes', "
            "1000000/1000000 delivered, 0 client(s) incomplete*",
        ]
    )


def test_user_example_is_short_and_uses_only_the_plugin():
    lines = USER_TEST.read_text().splitlines()
    assert len(lines) < 30
    imports = [line for line in lines if line.startswith(("import ", "from "))]
    assert imports == ["from pathlib import Path", "from fanwire.testing.stress import stress"]


def test_docs_show_the_example_that_ci_runs():
    docs = (USER_TEST.parents[2] / "docs" / "testing.md").read_text()
    code = USER_TEST.read_text().split('"""\n\n', 1)[1]  # all but the module docstring
    assert f"```python\n{code}```" in docs
