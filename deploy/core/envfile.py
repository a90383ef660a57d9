"""Read dotenv files strictly: a malformed line is an error naming the file and line number.

python-dotenv's ``dotenv_values`` only logs a warning for a line it cannot parse; a deploy tool must
refuse instead. Values are returned as a plain dict; nothing touches ``os.environ``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploy.core.errors import ConfigError


@dataclass(frozen=True)
class EnvValue:
    value: str
    line: int


def parse_env(text: str, source: str = "<string>") -> dict[str, EnvValue]:
    """Parse dotenv ``text``; raise ``ConfigError`` listing every bad line as ``source:line``."""
    import io

    from dotenv.parser import parse_stream

    values: dict[str, EnvValue] = {}
    problems = []
    for binding in parse_stream(io.StringIO(text)):
        line = binding.original.line
        if binding.error:
            problems.append(f"{source}:{line}: cannot parse this line (expected KEY=value)")
        elif binding.key is not None:
            if binding.value is None:
                problems.append(f"{source}:{line}: {binding.key} has no '=value'")
            else:
                values[binding.key] = EnvValue(binding.value, line)
    if problems:
        raise ConfigError(problems, source=source)
    return values


def read_env_file(path: Path | str, missing_ok: bool = False) -> dict[str, EnvValue]:
    """Read and parse a dotenv file. A missing file is an error unless ``missing_ok``."""
    path = Path(path)
    if not path.exists():
        if missing_ok:
            return {}
        raise ConfigError([f"{path}: file not found"], source=str(path))
    return parse_env(path.read_text(encoding="utf-8"), source=str(path))


def plain(values: dict[str, EnvValue]) -> dict[str, str]:
    return {k: v.value for k, v in values.items()}
