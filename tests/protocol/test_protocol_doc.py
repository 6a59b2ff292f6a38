"""docs/protocol.md and the code cannot drift: its tables are parsed and checked both ways.

When a test here fails after a change to protocol/kme/profile.py or protocol/kme/control/, run
``python tests/protocol/protocol_doc_tables.py`` and review the diff of docs/protocol.md.
"""

from __future__ import annotations

import re

import protocol_doc_tables as tables
import pytest

from protocol.ble.gatt_model import Permissions, Properties
from protocol.kme import profile
from protocol.kme.control.common import ControlStatus
from protocol.kme.control.consent import SetConsent
from protocol.kme.control.schema import (
    MESSAGE_TYPE_BLOCKS,
    ControlMessage,
    encode_control,
    schema_rows,
)
from protocol.kme.records import ConsentCategory

DOC = tables.DOC_PATH.read_text(encoding="utf-8")
FIX = "run `python tests/protocol/protocol_doc_tables.py` and commit docs/protocol.md"


def test_gatt_table_lists_exactly_the_profile() -> None:
    documented = tables.parse_gatt_table(tables.section(DOC, "GATT"))
    expected = tables.gatt_rows(profile.BAND_PROFILE)
    doc_by_uuid = {row.uuid: row for row in documented}
    code_by_uuid = {row.uuid: row for row in expected}
    assert len(doc_by_uuid) == len(documented), "a UUID appears twice in the GATT table"
    missing = [row.characteristic for row in expected if row.uuid not in doc_by_uuid]
    extra = [row.characteristic for row in documented if row.uuid not in code_by_uuid]
    assert not missing, f"characteristics missing from docs/protocol.md: {missing}; {FIX}"
    assert not extra, f"docs/protocol.md lists characteristics the profile lacks: {extra}"
    for char_uuid, row in code_by_uuid.items():
        assert doc_by_uuid[char_uuid] == row, f"{row.characteristic} differs; {FIX}"
    assert documented == expected, f"the GATT table is out of handle order; {FIX}"


def test_the_whole_document_has_no_other_gatt_rows() -> None:
    # Every table with the GATT header anywhere in the document is inside the section.
    assert tables.parse_gatt_table(DOC) == tables.parse_gatt_table(tables.section(DOC, "GATT"))


def test_services_table_lists_exactly_the_profile() -> None:
    documented = tables.parse_services_table(tables.section(DOC, "SERVICES"))
    expected = [tables.ServiceRow(s.name, s.uuid, s.description) for s in profile.BAND_PROFILE]
    assert documented == expected, FIX


def test_permission_names_are_defined_in_the_security_section() -> None:
    (table,) = [rows for header, rows in tables.tables(DOC) if header[:2] == ["Name", "Flags"]]
    defined = {}
    for cells in table:
        flags = re.findall(r"`([A-Z_]+)`", cells[1])
        value = Permissions.NONE
        for flag in flags:
            value |= Permissions[flag]
        if cells[1].startswith("the above plus"):
            value |= defined["protected read"]
        defined[cells[0]] = value
    assert defined == {name: perms for perms, name in tables.PERMISSION_NAMES.items()}


def test_status_table_matches_the_code() -> None:
    (_, rows), = tables.tables(tables.section(DOC, "STATUS"))  # fmt: skip
    assert [(int(code), name.strip("`")) for code, name in rows] == [
        (int(s), s.name) for s in ControlStatus
    ], FIX


def test_every_message_schema_is_documented_exactly() -> None:
    documented = tables.parse_schema_tables(tables.section(DOC, "SCHEMAS"))
    records = tables.documented_records()
    expected = {
        tables.schema_heading(cls): [
            tables.SchemaRow(key, name, ftype.replace("|", "/"), required)
            for key, name, ftype, required in schema_rows(cls)
        ]
        for cls in records
    }
    assert set(documented) == set(expected), FIX
    for heading, rows in expected.items():
        assert documented[heading] == rows, f"{heading} differs; {FIX}"


def test_documented_messages_cover_every_service_block() -> None:
    numbers = {
        cls.MESSAGE_TYPE for cls in tables.documented_records() if issubclass(cls, ControlMessage)
    }
    for block in ("common", "consent", "alarms", "device_control", "activation"):
        assert numbers & set(MESSAGE_TYPE_BLOCKS[block]), block


def test_the_cbor_example_is_what_the_encoder_writes() -> None:
    match = re.search(r"```\n(a5 [0-9a-f ]+)\n", DOC)
    assert match, "the SetConsent example is missing"
    message = SetConsent(ConsentCategory.SLEEP, True, 3)
    assert bytes.fromhex(match.group(1).replace(" ", "")) == encode_control(message)


def test_kme_uuid_base_in_the_text_matches_the_code() -> None:
    assert "4b4d4500-SSCC-4b4d-8000-000000000000" in DOC
    assert str(profile.kme_uuid(0x02, 0x03)) == "4b4d4500-0203-4b4d-8000-000000000000"


def test_record_sync_is_linked_not_duplicated() -> None:
    assert "[records.md](records.md)" in DOC


def test_generated_sections_are_current() -> None:
    assert tables.rewrite(DOC) == DOC, FIX


@pytest.mark.parametrize("bits", range(64))
def test_permission_rendering_is_reversible(bits: int) -> None:
    perms = Permissions(bits)
    assert tables.parse_permissions(tables.render_permissions(perms)) == perms


def test_property_rendering_is_reversible() -> None:
    for bits in range(256):
        properties = Properties(bits)
        assert tables.parse_properties(tables.render_properties(properties)) == properties


def test_no_cell_contains_a_pipe() -> None:
    for _service, char in profile.iter_characteristics():
        assert "|" not in char.value_format and "|" not in char.name
