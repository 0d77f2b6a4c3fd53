"""Reading a JSON request body as it streams in, without trusting its shape.

A submit body is one object whose ``images`` member may hold 130 MB of base64 and whose
other members (prompt, metadata...) are small. The object is split at its top level here:
each image string goes to a callback as soon as it ends, and every other member is kept as
raw bytes (at most ``max_fields_bytes`` of them together, at most ``max_depth`` levels deep)
and only then parsed by ``json.loads``. Strings and runs between brackets are skipped with
regex searches, at C speed. A parser that builds each event's path first (ijson did) lets a
body of 100,000 nested brackets take tens of GB before any check can run.
"""

from __future__ import annotations

import enum
import json
import re
from typing import Any, Protocol

from core.errors import FieldTooLarge, InvalidRequest
from core.settings import MB

_QUOTE, _BACKSLASH = ord('"'), ord("\\")
# An image string's first bytes, kept to tell a URL from base64 before it is streamed.
IMAGE_HEAD_BYTES = 512
_OPENERS, _CLOSERS = b"[{", b"]}"
_WHITESPACE = b" \t\r\n"
# Inside a string: where it may end or escape. Inside a container, outside strings: where
# the depth may change or a string start.
_STRING_STOP = re.compile(rb'["\\]')
_CONTAINER_STOP = re.compile(rb'["\[\]{}]')
_SCALAR_END = re.compile(rb"[\s,}\]]")
_CONTROL = re.compile(rb"[\x00-\x1f]")
# JSON strings in a complete text, for check_depth (escapes are skipped as pairs).
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def is_json_media_type(media_type: str) -> bool:
    """application/json or a +json type; ``media_type`` without parameters, lower case."""
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def size_text(size: int) -> str:
    if size % MB == 0:
        return f"{size // MB} MB"
    if size % 1024 == 0:
        return f"{size // 1024} KB"
    return f"{size} bytes"


def check_depth(name: str, raw: bytes, max_depth: int) -> None:
    """InvalidRequest naming ``name`` if the JSON text ``raw`` nests deeper than ``max_depth``
    (json.loads itself recurses once per level, and gives up at about a thousand)."""
    depth = 0
    for bracket in _BRACKETS.finditer(_JSON_STRING.sub(b"", raw)):
        if bracket.group() in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                raise InvalidRequest(
                    f"{name} is nested deeper than the limit of {max_depth} levels", input=name
                )
        else:
            depth -= 1


def check_text(name: str, value: Any) -> None:
    """InvalidRequest if a string in ``value`` cannot be stored: NUL characters (Postgres
    text and JSON refuse them) or unpaired surrogates (they have no UTF-8 form).

    ``value`` was parsed from JSON that passed check_depth, so recursion is bounded.
    """
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidRequest(f"{name} contains a NUL character (\\u0000)", input=name)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise InvalidRequest(
                f"{name} contains an unpaired surrogate ({value[error.start]!r}); "
                "text must be valid Unicode",
                input=name,
            ) from error
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(name, key)
            check_text(name, item)
    elif isinstance(value, list):
        for item in value:
            check_text(name, item)


def loads_field(name: str, raw: bytes | str, max_depth: int) -> Any:
    """Parse one field's JSON text: its depth first, then json.loads, then its strings."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    check_depth(name, data, max_depth)
    try:
        value = json.loads(data)
    except ValueError as error:
        raise InvalidRequest(f"{name} is not valid JSON: {error}", input=name) from error
    check_text(name, value)
    return value


class _State(enum.Enum):
    START = enum.auto()
    FIRST_KEY = enum.auto()  # after "{": a key or "}"
    NEXT_KEY = enum.auto()  # after ",": a key
    KEY = enum.auto()
    COLON = enum.auto()
    VALUE = enum.auto()
    FIELD = enum.auto()
    SCALAR = enum.auto()
    AFTER_VALUE = enum.auto()
    FIRST_IMAGE = enum.auto()  # after "[": an image string or "]"
    NEXT_IMAGE = enum.auto()
    IMAGE = enum.auto()
    AFTER_IMAGE = enum.auto()
    END = enum.auto()


class ImageStream(Protocol):
    """Where a long image string goes as it arrives (base64, JSON escapes undone)."""

    def write(self, text: bytes) -> None: ...

    def finish(self) -> None: ...


class ImageTarget(Protocol):
    """What the reader hands each image string to."""

    def whole(self, key: str, text: str) -> None:
        """A string that ended within its first IMAGE_HEAD_BYTES, or that ``stream``
        wanted whole (a URL)."""

    def stream(self, key: str, head: str) -> ImageStream | None:
        """A string longer than IMAGE_HEAD_BYTES, by its head: a stream to write it to, or
        None to have it whole (at most ``max_whole_chars``)."""


class _Unescaper:
    """JSON string escapes undone on a string that arrives in pieces (an escape may be
    cut between two). Gives bytes; a character past ASCII comes out as its UTF-8."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, raw: bytes) -> bytes:
        data = self._pending + raw if self._pending else raw
        self._pending = b""
        if _BACKSLASH not in data:
            return data
        out = bytearray()
        pos = 0
        while (slash := data.find(b"\\", pos)) >= 0:
            out += data[pos:slash]
            width = 6 if data[slash + 1 : slash + 2] == b"u" else 2
            if slash + width > len(data):
                self._pending = data[slash:]
                return bytes(out)
            escape = data[slash : slash + width]
            try:
                out += json.loads(b'"' + escape + b'"').encode("utf-8", "surrogatepass")
            except ValueError as error:
                raise ValueError(f"bad escape {escape.decode('latin-1')!r}") from error
            pos = slash + width
        out += data[pos:]
        return bytes(out)

    def close(self) -> None:
        if self._pending:
            raise ValueError("the string ends inside an escape")


class JsonObjectReader:
    """Feed it the body in pieces; ``fields`` holds every member but the images.

    ``image_keys`` maps the members that hold images to whether they are an array of
    strings (``images``) or one string (DumplingAI's ``image``). Each image string goes to
    ``images`` as it arrives: a short one whole, a long one (base64) as a stream, so that
    no image is ever held whole here.
    """

    def __init__(
        self,
        *,
        image_keys: dict[str, bool],
        images: ImageTarget,
        max_depth: int,
        max_fields_bytes: int,
        max_whole_chars: int,
    ) -> None:
        self.image_keys = image_keys
        self.images = images
        self.max_depth = max_depth
        self.max_fields_bytes = max_fields_bytes
        self.max_whole_chars = max_whole_chars
        self.fields: dict[str, Any] = {}
        self.image_count = 0
        # The image string being streamed (past its head), and its escapes.
        self._stream: ImageStream | None = None
        self._keep_whole = False
        self._unescaper = _Unescaper()
        self._state = _State.START
        self._key = ""
        self._image_key: str | None = None
        # The raw bytes of the key, field value or image string being read.
        self._raw = bytearray()
        self._fields_bytes = 0
        self._depth = 0
        self._in_string = False
        self._escape = False

    # Errors

    def _invalid(self, what: str, input_name: str | None = None) -> InvalidRequest:
        return InvalidRequest(f"the body is not valid JSON: {what}", input=input_name)

    def _images_not_strings(self) -> InvalidRequest:
        key = self._image_key or "images"
        shape = "an array of strings" if self.image_keys.get(key, True) else "a string"
        return InvalidRequest(f"{key} must be {shape} (URLs or base64)", input=key)

    def _count_field_bytes(self, size: int) -> None:
        self._fields_bytes += size
        if self._fields_bytes > self.max_fields_bytes:
            name = self._key or "a key"
            raise FieldTooLarge(
                f"the fields besides the images are over the limit of "
                f"{size_text(self.max_fields_bytes)} together (reached in {name})",
                input=self._key or None,
                details={"limit_bytes": self.max_fields_bytes},
            )

    # Feeding

    def feed(self, data: bytes) -> None:
        """Consume ``data``; raises our errors as soon as the body breaks a rule."""
        pos, size = 0, len(data)
        while pos < size:
            state = self._state
            if state is _State.KEY:
                pos = self._read_key_part(data, pos)
            elif state is _State.IMAGE:
                pos = self._read_image_part(data, pos)
            elif state is _State.FIELD:
                pos = self._read_container_part(data, pos)
            elif state is _State.SCALAR:
                pos = self._read_scalar_part(data, pos)
            else:
                byte = data[pos]
                if byte in _WHITESPACE:
                    pos += 1
                    continue
                self._token(byte)
                pos += 1

    def close(self) -> dict[str, Any]:
        """The fields, once the whole body was fed; InvalidRequest if it ended early."""
        if self._state is _State.SCALAR:
            self._end_field()
            self._state = _State.AFTER_VALUE
        if self._state is _State.START:
            raise InvalidRequest("the body is empty; send a JSON object")
        if self._state is not _State.END:
            raise self._invalid("the body ends before the object is complete")
        return self.fields

    def _token(self, byte: int) -> None:
        """One structural character outside strings and field values."""
        state, char = self._state, chr(byte)
        if state is _State.START:
            if char != "{":
                raise InvalidRequest("the JSON body must be an object")
            self._state = _State.FIRST_KEY
        elif state in (_State.FIRST_KEY, _State.NEXT_KEY):
            if char == "}" and state is _State.FIRST_KEY:
                self._state = _State.END
            elif char == '"':
                self._raw.clear()
                self._state = _State.KEY
            else:
                raise self._invalid(f"expected a member name, found {char!r}")
        elif state is _State.COLON:
            if char != ":":
                raise self._invalid(f"expected ':' after {self._key!r}, found {char!r}")
            self._state = _State.VALUE
        elif state is _State.VALUE:
            self._begin_value(byte)
        elif state is _State.AFTER_VALUE:
            if char == ",":
                self._key = ""
                self._state = _State.NEXT_KEY
            elif char == "}":
                self._state = _State.END
            else:
                raise self._invalid(f"expected ',' or '}}' after {self._key!r}, found {char!r}")
        elif state in (_State.FIRST_IMAGE, _State.NEXT_IMAGE):
            if char == "]" and state is _State.FIRST_IMAGE:
                self._state = _State.AFTER_VALUE
            elif char == '"':
                self._begin_image()
            else:
                raise self._images_not_strings()
        elif state is _State.AFTER_IMAGE:
            if char == ",":
                self._state = _State.NEXT_IMAGE
            elif char == "]":
                self._state = _State.AFTER_VALUE
            else:
                raise self._images_not_strings()
        else:  # END
            raise self._invalid("unexpected data after the object")

    def _begin_value(self, byte: int) -> None:
        key = self._key
        if key in self.image_keys:
            if self._image_key is not None:
                raise InvalidRequest(
                    f"send the images once, in one member; {self._image_key} came first",
                    input=key,
                )
            self._image_key = key
            if self.image_keys[key]:
                if byte != ord("["):
                    raise self._images_not_strings()
                self._state = _State.FIRST_IMAGE
            else:
                if byte != _QUOTE:
                    raise self._images_not_strings()
                self._begin_image()
            return
        self._raw[:] = bytes([byte])
        self._count_field_bytes(1)
        if byte == _QUOTE:
            self._in_string, self._depth = True, 0
            self._state = _State.FIELD
        elif byte in _OPENERS:
            self._in_string, self._depth = False, 1
            self._state = _State.FIELD
        elif byte in _CLOSERS or byte in b",:":
            raise self._invalid(f"{key} has no value", input_name=key)
        else:
            self._state = _State.SCALAR

    def _begin_image(self) -> None:
        self._raw.clear()
        self._stream, self._keep_whole = None, False
        self._unescaper = _Unescaper()
        self._state = _State.IMAGE

    def _string_end(self, data: bytes, pos: int) -> tuple[int, bool]:
        """Where the string being read ends in ``data`` (after its closing quote), or the
        end of ``data``; and whether it ended. Escapes are skipped, not undone."""
        while pos < len(data):
            if self._escape:
                pos += 1
                self._escape = False
                continue
            found = _STRING_STOP.search(data, pos)
            if found is None:
                return len(data), False
            pos = found.end()
            if data[found.start()] == _QUOTE:
                return pos, True
            self._escape = True
        return pos, False

    def _read_key_part(self, data: bytes, pos: int) -> int:
        end, done = self._string_end(data, pos)
        piece = data[pos : end - 1 if done else end]
        self._count_field_bytes(len(piece))
        self._raw += piece
        if done:
            self._key = self._decode_string(bytes(self._raw), "a member name")
            self._state = _State.COLON
        return end

    def _read_image_part(self, data: bytes, pos: int) -> int:
        end, done = self._string_end(data, pos)
        piece = data[pos : end - 1 if done else end]
        where = f"images[{self.image_count}]"
        if self._stream is not None:
            self._stream.write(self._unescape(piece, where))
        else:
            self._raw += piece
            if not self._keep_whole and len(self._raw) >= IMAGE_HEAD_BYTES:
                head = self._unescape(bytes(self._raw), where)
                key = self._image_key or "images"
                self._stream = self.images.stream(key, head.decode("ascii", "replace"))
                if self._stream is None:
                    self._keep_whole = True
                    self._unescaper = _Unescaper()
                else:
                    self._stream.write(head)
                    self._raw.clear()
            if len(self._raw) > self.max_whole_chars:
                raise InvalidRequest(
                    f"{where} is over {size_text(self.max_whole_chars)} and is neither base64 "
                    "nor a URL",
                    input=where,
                )
        if done:
            self._end_image()
        return end

    def _unescape(self, raw: bytes, where: str) -> bytes:
        try:
            return self._unescaper.feed(raw)
        except ValueError as error:
            raise self._invalid(f"{where}: {error}", input_name=where) from error

    def _decode_string(self, raw: bytes, what: str) -> str:
        try:
            if _CONTROL.search(raw):
                raise ValueError("a control character inside a string")
            if _BACKSLASH in raw:
                text: str = json.loads(b'"' + raw + b'"')
            else:
                text = raw.decode("utf-8")
        except ValueError as error:
            where = what if what.startswith("images[") else None
            raise self._invalid(f"{what}: {error}", input_name=where) from error
        check_text(what, text)
        return text

    def _end_image(self) -> None:
        key = self._image_key or "images"
        where = f"images[{self.image_count}]"
        if self._stream is not None:
            try:
                self._unescaper.close()
            except ValueError as error:
                raise self._invalid(f"{where}: {error}", input_name=where) from error
            self._stream.finish()
            self._stream = None
        else:
            text = self._decode_string(bytes(self._raw), where)
            self._raw.clear()
            self.images.whole(key, text)
        self.image_count += 1
        self._state = _State.AFTER_IMAGE if self.image_keys[key] else _State.AFTER_VALUE

    def _read_container_part(self, data: bytes, pos: int) -> int:
        """A field value's bytes until the string or container it opened closes."""
        start = pos
        ended = False
        while pos < len(data) and not ended:
            if self._in_string:
                pos, closed = self._string_end(data, pos)
                if closed:
                    self._in_string = False
                    ended = self._depth == 0
                continue
            found = _CONTAINER_STOP.search(data, pos)
            if found is None:
                pos = len(data)
                break
            pos = found.end()
            byte = data[found.start()]
            if byte == _QUOTE:
                self._in_string = True
            elif byte in _OPENERS:
                self._depth += 1
                if self._depth > self.max_depth:
                    raise InvalidRequest(
                        f"{self._key} is nested deeper than the limit of {self.max_depth} levels",
                        input=self._key,
                    )
            else:
                self._depth -= 1
                ended = self._depth == 0
        self._raw += data[start:pos]
        self._count_field_bytes(pos - start)
        if ended:
            self._end_field()
        return pos

    def _read_scalar_part(self, data: bytes, pos: int) -> int:
        found = _SCALAR_END.search(data, pos)
        end = found.start() if found is not None else len(data)
        self._raw += data[pos:end]
        self._count_field_bytes(end - pos)
        if found is not None:
            self._end_field()
        return end

    def _end_field(self) -> None:
        key = self._key
        self.fields[key] = loads_field(key, bytes(self._raw), self.max_depth)
        self._raw.clear()
        self._state = _State.AFTER_VALUE
