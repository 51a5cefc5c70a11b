"""An optional package an install lacks: one red line naming what to install, in every command
(the serve image has no pandas; tritonclient is an extra). tests/test_deploy_install.py checks
the same in a venv built from the serve image's requirements file."""

from __future__ import annotations

import builtins
import importlib.util

import pytest

from finsight.errors import BackendError, FinsightError
from finsight.extras import import_optional, missing_error, require


def _without(monkeypatch, *missing: str) -> None:
    """Pretend ``missing`` are not installed: find_spec says so and importing them fails."""
    real_spec, real_import = importlib.util.find_spec, builtins.__import__

    def find_spec(name, *args):
        return None if name.split(".")[0] in missing else real_spec(name, *args)

    def imports(name, *args, **kwargs):
        if name.split(".")[0] in missing:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(builtins, "__import__", imports)


def test_require_names_who_needs_what_and_the_install(monkeypatch):
    _without(monkeypatch, "tritonclient")
    with pytest.raises(BackendError) as exc:
        import_optional("tritonclient.grpc", needed_by="the triton backend (grpc)", error=BackendError)
    assert str(exc.value) == ("the triton backend (grpc) needs tritonclient, which this install lacks; "
                              "pip install 'finsight[triton]'")
    require("numpy", needed_by="anything")  # installed: nothing raised


def test_a_package_without_the_part_a_module_needs_names_the_extra(monkeypatch):
    """tritonclient installed with [http] only: its grpc module fails on grpc itself."""
    real_import = builtins.__import__

    def imports(name, *args, **kwargs):
        if name == "tritonclient.grpc":
            raise ModuleNotFoundError("No module named 'grpc'", name="grpc")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", imports)
    monkeypatch.setattr(importlib, "import_module", lambda name: imports(name))
    with pytest.raises(FinsightError, match=r"needs tritonclient.*pip install 'finsight\[triton\]'"):
        import_optional("tritonclient.grpc", needed_by="finsight triton")


def test_missing_error_leaves_other_import_errors_alone():
    assert missing_error(ModuleNotFoundError("x", name="not_a_listed_package"), "finsight x") is None
    assert missing_error(ModuleNotFoundError("x", name="numpy"), "finsight x") is None  # installed: a bug


def test_analyze_without_pandas_is_one_line(cli, monkeypatch, tmp_path):
    (tmp_path / "in.csv").write_text("text\nProfit rose.\n")
    _without(monkeypatch, "pandas")
    result = cli("analyze", tmp_path / "in.csv", "--model", tmp_path)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: finsight analyze needs pandas, which this install lacks; pip install pandas pyarrow"], result.stderr


def test_triton_backend_without_tritonclient_is_one_line(monkeypatch):
    from finsight.predict.triton_backend import _client_module

    _without(monkeypatch, "tritonclient")
    with pytest.raises(BackendError, match=r"^the triton backend \(http\) needs tritonclient, .*finsight\[triton\]"):
        _client_module("http")
