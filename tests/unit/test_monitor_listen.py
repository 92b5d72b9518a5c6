"""``paasport monitor --metrics-listen`` must be HOST:PORT, also with --once (which serves
nothing): a typo is a one-line usage error, never a silent exit 0 (issue 9)."""

from __future__ import annotations

import pytest

from paasport.cli.main import main


@pytest.mark.parametrize("value", ["bogus", "127.0.0.1:99999", "127.0.0.1:", "localhost:http"])
def test_a_bad_metrics_listen_is_a_usage_error_naming_the_flag(
    value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_engine(cluster: object) -> object:
        raise AssertionError("the flag is checked before anything runs")

    monkeypatch.setattr("paasport.engine.factory.engine_for", no_engine)
    with pytest.raises(SystemExit) as exited:
        main(["monitor", "--once", "--metrics-listen", value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    expected = "expected HOST:PORT (e.g. 127.0.0.1:9464, or '' to not serve)"
    assert err == f"error: --metrics-listen {value!r}: {expected}\n"
