"""docs/configuration.md lists exactly the settings there are, with their defaults, and no doc
names a TOKENWARD_ variable that nothing reads."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, SecretStr

from tokenward.client_cli import PASSPHRASE_ENV, STORE_ENV
from tokenward.config import Settings
from tokenward.monitor.config import MonitorSettings

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "configuration.md"
CLIENT_SIDE = {STORE_ENV, PASSPHRASE_ENV}
DETECTOR_ROW = "TOKENWARD_MONITOR_<DETECTOR>__<FIELD>"


def _sections() -> dict[str, type[BaseModel]]:
    return {
        name: field.annotation
        for name, field in MonitorSettings.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }


def _monitor_scalars() -> set[str]:
    return {name for name in MonitorSettings.model_fields if name not in _sections()}


def rows() -> dict[str, str]:
    """Setting name -> its default cell."""
    found = re.findall(r"^\| `(TOKENWARD_[A-Z0-9_<>]+)` \| ([^|]*) \|", DOC.read_text(), re.M)
    names = [name for name, _ in found]
    assert len(names) == len(set(names)), "a setting is listed twice"
    return dict(found)


def test_the_table_lists_exactly_the_settings() -> None:
    expected = (
        {f"TOKENWARD_{name.upper()}" for name in Settings.model_fields}
        | {f"TOKENWARD_MONITOR_{name.upper()}" for name in _monitor_scalars()}
        | {DETECTOR_ROW}
        | CLIENT_SIDE
    )
    assert set(rows()) == expected


def test_the_table_gives_each_server_default() -> None:
    table = rows()
    for name, field in Settings.model_fields.items():
        default = field.default
        if default is None or default == "":  # unset or empty: said in words
            continue
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        assert f"`{shown}`" in table[f"TOKENWARD_{name.upper()}"], name


def test_every_setting_the_docs_name_exists() -> None:
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    sections = _sections()
    for document in documents:
        for name in re.findall(r"\bTOKENWARD_[A-Z0-9_]*[A-Z0-9]\b", document.read_text()):
            field = name.removeprefix("TOKENWARD_").lower()
            if name in CLIENT_SIDE or field in Settings.model_fields:
                continue
            monitor = field.removeprefix("monitor_")
            assert field.startswith("monitor_"), (document.name, name)
            section, _, nested = monitor.partition("__")
            if nested:
                assert nested in sections[section].model_fields, (document.name, name)
            else:
                assert monitor in _monitor_scalars(), (document.name, name)


def test_the_master_key_format_is_documented_as_generated() -> None:
    from tokenward.tokens.sealing import generate_master_key

    key = generate_master_key()
    text = DOC.read_text()
    assert f"{len(key)} characters" in text
    assert "base64url without padding" in text
    assert isinstance(Settings(master_key=key).master_key, SecretStr)
