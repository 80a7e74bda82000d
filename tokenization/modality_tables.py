"""Several modalities' code tables for one catalogue, saved and reloaded together (MSCGRec, ``docs/mscgrec.md``).

MSCGRec quantizes every modality of an item on its own (text, collaborative, image, ...), each with its own
collision level, so an item has one unique code tuple per modality. :class:`ModalityCodeTables` holds those
:class:`~.code_table.CodeTable` objects by modality name and names the *decoding* modality (the one the model
generates, whose table is the tokenizer's). The decoding table lists the catalogue; every other table holds a
subset of it (an item absent from a modality's table lacks that modality and is read through mask tokens).

On disk, in one folder::

    modality_tables.json        format, version, decoding modality, per modality: folder, items, sizes, hash
    <name>/code_table.parquet   one CodeTable folder per modality (CodeTable.save)
    <name>/code_table.json

:meth:`ModalityCodeTables.load` verifies every table twice: against its own ``code_table.json`` (the CodeTable's
file check) and against the hash the manifest recorded when the set was saved, so a table replaced by another
quantization of the same modality is refused instead of silently feeding a model other codes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from .code_table import CodeTable

__all__ = ["MODALITY_TABLES_FILE", "ModalityCodeTables"]

MODALITY_TABLES_FILE = "modality_tables.json"
_FORMAT_NAME = "genrec-modality-code-tables"
_FORMAT_VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_modality_name(name: str) -> str:
    """``name`` if it can name a modality (letters, digits, ``_ . -``; it becomes a folder name), else ValueError."""
    if not isinstance(name, str) or not _NAME.match(name) or name in {".", ".."}:
        raise ValueError(
            f"modality name {name!r} must start with a letter or digit and hold only letters, digits, '_', '.', '-'"
        )
    return name


class ModalityCodeTables(Mapping[str, CodeTable]):
    """The code tables of one catalogue's modalities, by name, with the decoding modality named.

    Args:
        tables: modality name -> ``CodeTable`` (insertion order is kept: the decoding modality first, then the
            history modalities in the order given).
        decode_modality: the name whose table is the catalogue (and the model's tokenizer's table).

    Raises ``ValueError`` when the decoding modality has no table, a name is not usable as a folder, or a
    table holds items that are not in the decoding table (the tables would not describe one catalogue).
    """

    def __init__(self, tables: Mapping[str, CodeTable], decode_modality: str) -> None:
        if decode_modality not in tables:
            raise ValueError(f"the decoding modality {decode_modality!r} has no table (tables: {sorted(tables)})")
        catalogue = set(tables[decode_modality].item_ids)
        ordered = {decode_modality: tables[decode_modality]}
        ordered.update((name, table) for name, table in tables.items() if name != decode_modality)
        for name, table in ordered.items():
            check_modality_name(name)
            if not isinstance(table, CodeTable):
                raise TypeError(f"modality {name!r}: expected a CodeTable, got {type(table).__name__}")
            extra = [item for item in table.item_ids if item not in catalogue]
            if extra:
                raise ValueError(
                    f"modality {name!r}: {len(extra)} of its {len(table)} items are not in the decoding modality "
                    f"{decode_modality!r}'s catalogue (e.g. {extra[:3]}); every table must describe the same items"
                )
        self._tables = ordered
        self.decode_modality = decode_modality

    # ------------------------------------------------------------------------------------------ mapping

    def __getitem__(self, name: str) -> CodeTable:
        if name not in self._tables:
            raise KeyError(f"no modality {name!r}; this set holds {list(self._tables)}")
        return self._tables[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tables)

    def __len__(self) -> int:
        return len(self._tables)

    def __repr__(self) -> str:
        parts = ", ".join(f"{name}: {len(table)} items {table.codebook_sizes}" for name, table in self._tables.items())
        return f"ModalityCodeTables(decode={self.decode_modality!r}; {parts})"

    @property
    def decode_table(self) -> CodeTable:
        """The decoding modality's table (the catalogue)."""
        return self._tables[self.decode_modality]

    @property
    def history_tables(self) -> dict[str, CodeTable]:
        """The other modalities' tables, in order (what ``train_stage2(history_modalities=...)`` takes)."""
        return {name: table for name, table in self._tables.items() if name != self.decode_modality}

    def content_hashes(self) -> dict[str, str]:
        """Each modality's table content hash."""
        return {name: table.content_hash for name, table in self._tables.items()}

    def coverage(self) -> dict[str, float]:
        """Share of the catalogue's items that have codes in each modality (1.0 = nothing missing)."""
        total = len(self.decode_table)
        return {name: len(table) / total for name, table in self._tables.items()}

    # ------------------------------------------------------------------------------------------ files

    def save(self, directory: str | os.PathLike) -> Path:
        """Write every table into ``directory/<name>/`` and the manifest last (it marks a complete save)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        entries = []
        for name, table in self._tables.items():
            table.save(directory / name)
            entries.append({
                "name": name, "folder": name, "num_items": len(table),
                "codebook_sizes": list(table.codebook_sizes), "content_hash": table.content_hash,
            })
        manifest = {
            "format": _FORMAT_NAME, "version": _FORMAT_VERSION, "decode_modality": self.decode_modality,
            "num_catalogue_items": len(self.decode_table), "modalities": entries,
        }
        path = directory / MODALITY_TABLES_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return directory

    @classmethod
    def load(
        cls, directory: str | os.PathLike, *, expected_hashes: Mapping[str, str | None] | None = None
    ) -> ModalityCodeTables:
        """Read a folder written by :meth:`save`, checking every table's hash.

        ``expected_hashes`` (e.g. a model config's recorded hashes, by modality name): each given, non-None
        hash must equal the loaded table's, else ``ValueError`` naming the modality.
        """
        directory = Path(directory)
        path = directory / MODALITY_TABLES_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no {MODALITY_TABLES_FILE} in {directory}: save the tables with ModalityCodeTables.save")
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path} is not valid JSON ({error}): the file is corrupt or truncated") from None
        if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT_NAME:
            raise ValueError(f"{path} is not a genrec modality-tables manifest")
        if manifest.get("version") != _FORMAT_VERSION:
            raise ValueError(f"{path}: version {manifest.get('version')} is not supported (expected {_FORMAT_VERSION})")
        tables: dict[str, CodeTable] = {}
        for entry in manifest["modalities"]:
            name = check_modality_name(entry["name"])
            table = CodeTable.load(directory / check_modality_name(entry["folder"]))
            if table.content_hash != entry["content_hash"]:
                raise ValueError(
                    f"modality {name!r}: the table in {directory / entry['folder']} has hash "
                    f"{table.content_hash[:12]}... but {path} recorded {str(entry['content_hash'])[:12]}...: the "
                    "table was replaced after the set was saved; restore it or save the set again"
                )
            tables[name] = table
        loaded = cls(tables, manifest["decode_modality"])
        for name, expected in (expected_hashes or {}).items():
            if name not in loaded:
                raise ValueError(f"no table for modality {name!r} in {directory} (it holds {list(loaded)})")
            if expected is not None and loaded[name].content_hash != expected:
                raise ValueError(
                    f"modality {name!r}: the table in {directory} has hash {loaded[name].content_hash[:12]}... but "
                    f"the model was trained with {str(expected)[:12]}...; use the tables saved with that model"
                )
        return loaded
