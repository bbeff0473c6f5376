"""progress(): a bar on a terminal, silent in CI and in pipes, overridable."""

import io

import pytest

from instructflow import progress as p


class TTY(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("env,tty,expected", [
    ({}, True, True), ({}, False, False), ({"CI": "true"}, True, False), ({"CI": "false"}, True, True),
    ({"INSTRUCTFLOW_PROGRESS": "1", "CI": "true"}, False, True), ({"INSTRUCTFLOW_PROGRESS": "0"}, True, False),
])
def test_enabled(monkeypatch, env, tty, expected):
    for key in ("CI", "INSTRUCTFLOW_PROGRESS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert p.enabled(TTY() if tty else io.StringIO()) is expected


def test_progress_yields_everything_and_is_silent_in_ci(monkeypatch, capsys):
    monkeypatch.setenv("CI", "true")
    monkeypatch.delenv("INSTRUCTFLOW_PROGRESS", raising=False)
    assert list(p.progress(range(5), "counting")) == [0, 1, 2, 3, 4]
    assert capsys.readouterr().err == ""


def test_progress_draws_when_forced(monkeypatch, capsys):
    monkeypatch.setenv("INSTRUCTFLOW_PROGRESS", "1")
    assert sum(p.progress(range(3), "summing")) == 3
    assert "summing" in capsys.readouterr().err
