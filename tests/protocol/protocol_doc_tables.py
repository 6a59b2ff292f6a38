"""Render and parse the generated tables of docs/protocol.md.

``python tests/protocol/protocol_doc_tables.py`` rewrites the sections between the
``<!-- BEGIN name -->`` / ``<!-- END name -->`` markers from protocol.kme.profile and the
control-message catalogues (protocol.kme.control.*); tests/protocol/test_protocol_doc.py
parses the committed document and checks it against the same sources, so the two cannot
drift.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from protocol.ble.gatt_model import Permissions, Properties, ServiceDefinition
from protocol.ble.uuids import parse_uuid, short_name
from protocol.kme import access, profile
from protocol.kme.control.common import ControlStatus
from protocol.kme.control.schema import (
    ControlMessage,
    ControlRecord,
    registered_messages,
    schema_rows,
)

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

GATT_HEADER = ("Service", "Characteristic", "UUID", "Properties", "Permissions", "Value format")
SERVICE_HEADER = ("Service", "UUID", "Description")
SCHEMA_HEADER = ("Key", "Field", "Type", "Required")

#: Named permission sets, as docs/protocol.md (section Security) defines them.
PERMISSION_NAMES: dict[Permissions, str] = {
    profile.OPEN_READ: "open read",
    profile.PROTECTED_READ: "protected read",
    profile.PROTECTED_READ_WRITE: "protected read/write",
    profile.PROTECTED_NOTIFY_ONLY: "protected notify",
    profile.PROTECTED_CONTROL_POINT: "protected control point",
    profile.OPEN_READ_PROTECTED_WRITE: "open read, protected write",
    Permissions.WRITABLE | Permissions.WRITE_ENCRYPTED | Permissions.WRITE_AUTHENTICATED: (
        "protected write"
    ),
}
_PERMISSIONS_BY_NAME = {name: perms for perms, name in PERMISSION_NAMES.items()}

_PROPERTY_ORDER = [
    Properties.BROADCAST,
    Properties.READ,
    Properties.WRITE_WITHOUT_RESPONSE,
    Properties.WRITE,
    Properties.NOTIFY,
    Properties.INDICATE,
    Properties.AUTHENTICATED_SIGNED_WRITES,
    Properties.EXTENDED_PROPERTIES,
]


class GattRow(NamedTuple):
    """One characteristic as the GATT table states it."""

    service: str
    characteristic: str
    uuid: uuid.UUID
    properties: Properties
    permissions: Permissions
    value_format: str


class ServiceRow(NamedTuple):
    service: str
    uuid: uuid.UUID
    description: str


class SchemaRow(NamedTuple):
    key: int
    name: str
    type: str
    required: bool


# ---------------------------------------------------------------------------- render


def render_properties(properties: Properties) -> str:
    names = [p.name.lower().replace("_", " ") for p in _PROPERTY_ORDER if properties & p]
    return ", ".join(names) if names else "none"


def render_permissions(permissions: Permissions) -> str:
    if permissions in PERMISSION_NAMES:
        return PERMISSION_NAMES[permissions]
    flags = [p.name for p in Permissions if p and permissions & p and p.name]
    return " + ".join(flag.lower() for flag in flags) if flags else "none"


def _uuid_cell(value: uuid.UUID) -> str:
    return f"`{short_name(value)}`"


def _table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def gatt_rows(services: Iterable[ServiceDefinition]) -> list[GattRow]:
    return [
        GattRow(s.name, c.name, c.uuid, c.properties, c.permissions, c.value_format)
        for s in services
        for c in s.characteristics
    ]


def render_services_table(services: Iterable[ServiceDefinition]) -> list[str]:
    return _table(SERVICE_HEADER, ((s.name, _uuid_cell(s.uuid), s.description) for s in services))


def render_gatt_table(services: Iterable[ServiceDefinition]) -> list[str]:
    return _table(
        GATT_HEADER,
        (
            (
                r.service,
                r.characteristic,
                _uuid_cell(r.uuid),
                render_properties(r.properties),
                render_permissions(r.permissions),
                r.value_format,
            )
            for r in gatt_rows(services)
        ),
    )


def documented_records() -> list[type[ControlRecord]]:
    """The control records and messages docs/protocol.md lists, in its order.

    Every service's catalogue except record sync, which docs/records.md documents.
    """
    messages = sorted(
        (c for c in registered_messages().values() if c.SERVICE != "record_sync"),
        key=lambda c: c.MESSAGE_TYPE,
    )
    nested: list[type[ControlRecord]] = []
    for message in messages:
        for spec in message.SCHEMA:
            for ftype in (spec.type, getattr(spec.type, "item", None)):
                record = getattr(ftype, "record_type", None)
                if record is not None and record not in nested:
                    nested.append(record)
    return [*messages, *nested]


def schema_heading(cls: type[ControlRecord]) -> str:
    if issubclass(cls, ControlMessage):
        return f"#### `0x{cls.MESSAGE_TYPE:02X}` {cls.__name__}"
    return f"#### {cls.__name__} (nested map)"


def render_schemas() -> list[str]:
    lines: list[str] = []
    for cls in documented_records():
        lines += [schema_heading(cls), ""]
        doc = re.sub(r":(?:class|func|data|meth):", "", " ".join((cls.__doc__ or "").split()))
        lines += [doc, ""]
        rows = [
            (str(key), f"`{name}`", ftype.replace("|", "/"), "yes" if required else "no")
            for key, name, ftype, required in schema_rows(cls)
        ]
        if rows:
            lines += _table(SCHEMA_HEADER, rows)
        else:
            lines.append("No fields: keys 0 and 1 only.")
        lines.append("")
    return lines[:-1]


def render_status_table() -> list[str]:
    return _table(("Code", "Status"), ((str(int(s)), f"`{s.name}`") for s in ControlStatus))


def render_access_table() -> list[str]:
    return _table(
        ("Service", "Operation", "Who may"),
        ((rule.service, rule.operation, ACCESS_NAMES[rule.access]) for rule in access.rules()),
    )


#: How docs/protocol.md names each access rule (defined in its "Security" section).
ACCESS_NAMES = {
    access.Access.LINK: "link",
    access.Access.OWNER_ONCE_ACTIVATED: "owner once activated",
    access.Access.OWNER: "owner",
}


def generated_sections() -> dict[str, list[str]]:
    return {
        "ACCESS": render_access_table(),
        "SERVICES": render_services_table(profile.BAND_PROFILE),
        "GATT": render_gatt_table(profile.BAND_PROFILE),
        "STATUS": render_status_table(),
        "SCHEMAS": render_schemas(),
    }


def rewrite(text: str) -> str:
    for name, lines in generated_sections().items():
        pattern = re.compile(
            rf"(<!-- BEGIN {name} -->\n)(?:.*?\n)?(<!-- END {name} -->)", flags=re.DOTALL
        )
        if not pattern.search(text):
            raise SystemExit(f"docs/protocol.md has no {name} markers")
        body = "\n".join(lines)
        text = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), text)
    return text


# ----------------------------------------------------------------------------- parse


def section(text: str, name: str) -> str:
    match = re.search(rf"<!-- BEGIN {name} -->\n(.*?)\n<!-- END {name} -->", text, re.DOTALL)
    if match is None:
        raise AssertionError(f"docs/protocol.md has no {name} section markers")
    return match.group(1)


def _split_row(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def tables(text: str) -> Iterator[tuple[list[str], list[list[str]]]]:
    """Every markdown table in ``text``: (header cells, body rows)."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and set(lines[i + 1]) <= set("|- :"):
            header = _split_row(lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_split_row(lines[i]))
                i += 1
            yield header, rows
        else:
            i += 1


def parse_uuid_cell(cell: str) -> uuid.UUID:
    return parse_uuid(cell.strip("`"))


def parse_properties(cell: str) -> Properties:
    result = Properties(0)
    if cell == "none":
        return result
    for name in cell.split(", "):
        result |= Properties[name.upper().replace(" ", "_")]
    return result


def parse_permissions(cell: str) -> Permissions:
    if cell in _PERMISSIONS_BY_NAME:
        return _PERMISSIONS_BY_NAME[cell]
    result = Permissions.NONE
    if cell == "none":
        return result
    for name in cell.split(" + "):
        result |= Permissions[name.upper()]
    return result


def parse_gatt_table(text: str) -> list[GattRow]:
    rows: list[GattRow] = []
    for header, body in tables(text):
        if tuple(header) != GATT_HEADER:
            continue
        for cells in body:
            service, name, uuid_cell, props, perms, fmt = cells
            rows.append(
                GattRow(
                    service,
                    name,
                    parse_uuid_cell(uuid_cell),
                    parse_properties(props),
                    parse_permissions(perms),
                    fmt,
                )
            )
    return rows


def parse_services_table(text: str) -> list[ServiceRow]:
    return [
        ServiceRow(cells[0], parse_uuid_cell(cells[1]), cells[2])
        for header, body in tables(text)
        if tuple(header) == SERVICE_HEADER
        for cells in body
    ]


def parse_schema_tables(text: str) -> dict[str, list[SchemaRow]]:
    """Schema tables by their heading line (``#### ...``); a heading with no table maps
    to an empty list."""
    out: dict[str, list[SchemaRow]] = {}
    chunks = re.split(r"^(#### .*)$", text, flags=re.MULTILINE)
    for heading, body in zip(chunks[1::2], chunks[2::2], strict=True):
        rows: list[SchemaRow] = []
        for header, cells_list in tables(body):
            if tuple(header) != SCHEMA_HEADER:
                continue
            for cells in cells_list:
                rows.append(
                    SchemaRow(int(cells[0]), cells[1].strip("`"), cells[2], cells[3] == "yes")
                )
        out[heading.strip()] = rows
    return out


def main() -> None:
    text = DOC_PATH.read_text(encoding="utf-8")
    new = rewrite(text)
    if new != text:
        DOC_PATH.write_text(new, encoding="utf-8")
        print(f"rewrote the generated sections of {DOC_PATH}")
    else:
        print(f"{DOC_PATH} is up to date")


if __name__ == "__main__":
    sys.exit(main())
