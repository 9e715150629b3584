from __future__ import annotations

from pathlib import Path

import pytest

from llmops.serving.deployments import fetch_adapter
from llmops.serving.routing import AliasTable, Deployment, UnknownModel, parse


def test_request_names() -> None:
    assert parse("support-bot") == ("support-bot", "champion", None)
    assert parse("support-bot@challenger") == ("support-bot", "challenger", None)
    assert parse("support-bot/3") == ("support-bot", None, 3)
    for bad in ("@x", "m@", "m/x", "/3"):
        with pytest.raises(UnknownModel):
            parse(bad)


def test_alias_table_persists_and_forgets(tmp_path: Path) -> None:
    path = tmp_path / "aliases.sqlite"
    table = AliasTable(path)
    v2 = Deployment("bot", 2, "file:///a/2", "SmolLM2-135M-Instruct")
    table.set("bot", "champion", v2)
    table.close()
    reopened = AliasTable(path)
    assert reopened.by_alias("bot", "champion") == v2
    assert reopened.by_version("bot", 2) == v2
    reopened.set("bot", "champion", None)
    assert reopened.by_alias("bot", "champion") is None
    assert reopened.by_version("bot", 2) == v2  # a version once served stays addressable by number
    assert reopened.all_aliases() == []


def test_fetch_adapter_needs_an_adapter(tmp_path: Path) -> None:
    folder = tmp_path / "adapter"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        fetch_adapter(f"file://{folder}", tmp_path / "cache")
    (folder / "adapter_config.json").write_text("{}")
    assert fetch_adapter(f"file://{folder}", tmp_path / "cache") == folder
