"""Reading .npy members of a zip (an .npz) that nothing in it is trusted: a member's size
and .npy header are checked against what the caller expects before its data is read, so
that a truncated, foreign or crafted file costs neither memory nor time and fails as one
`Invalid`, worded for the caller's message (see checkpoint.load_checkpoint).
"""

from __future__ import annotations

import io
import math
import struct
import tokenize
import warnings
import zipfile
import zlib
from typing import NamedTuple

import numpy as np
from numpy.lib import format as npy_format

from neural_style.errors import one_line


class Invalid(Exception):
    """What is wrong with a checkpoint file, worded for load_checkpoint's message."""


# What a damaged or crafted file can make zipfile and numpy's header parser raise.
MALFORMED = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    OSError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    NotImplementedError,
    RuntimeError,
    OverflowError,
    struct.error,
    zlib.error,
    SyntaxError,  # numpy re-parses an odd header with tokenize
    tokenize.TokenError,
)


# Magic, version, length and header of one .npy member; numpy.savez writes 128 bytes.
HEADER_ALLOWANCE = 4096


class Member(NamedTuple):
    kind: str  # "image" [H, W, 3], "scalar" (), or "text" (a 0-d unicode array)
    dtype: str  # numpy dtype name; "str" for a text
    limit: int = 0  # most characters of a text


class Header(NamedTuple):
    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype
    offset: int  # bytes before the data: magic, version, length and header


def some(names: list[str]) -> str:
    """The first few of `names`, and how many more."""
    shown = ", ".join(names[:3])
    return shown if len(names) <= 3 else f"{shown} and {len(names) - 3} more"


def most_bytes(member: Member, largest_image: int) -> int:
    """The most data bytes `member` can hold in a run whose largest stage has
    `largest_image` pixels."""
    if member.kind == "text":
        return 4 * member.limit  # numpy stores unicode as UTF-32
    itemsize = np.dtype(member.dtype).itemsize
    return itemsize * (3 * largest_image if member.kind == "image" else 1)


def read_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, member: Member) -> Header:
    """The member's .npy header, once its dtype and shape are the member's and its size
    is exactly the header and the data the header declares."""
    name = info.filename
    # The header is parsed from its first bytes alone, whatever length it declares.
    with archive.open(info) as member_stream:
        stream = io.BytesIO(member_stream.read(HEADER_ALLOWANCE))
    try:
        major, minor = npy_format.read_magic(stream)
        if (major, minor) not in ((1, 0), (2, 0)):
            raise Invalid(f"{name} is a .npy of version {major}.{minor}, not 1.0 or 2.0")
        read = npy_format.read_array_header_1_0 if major == 1 else npy_format.read_array_header_2_0
        with warnings.catch_warnings():  # numpy warns of odd headers: the error says it
            warnings.simplefilter("ignore")
            shape, fortran_order, dtype = read(stream, max_header_size=HEADER_ALLOWANCE)
    except MALFORMED as error:
        raise Invalid(f"{name} has no valid .npy header: {one_line(error)}") from None
    offset = stream.tell()
    if member.kind == "text":
        if dtype.kind != "U" or shape != ():
            raise Invalid(f"{name} is not a text but {describe_array(dtype, shape)}")
        if dtype.itemsize // 4 > member.limit:
            raise Invalid(f"{name} holds {dtype.itemsize // 4} characters, over {member.limit}")
    else:
        if dtype.newbyteorder("=") != np.dtype(member.dtype):
            raise Invalid(f"{name} holds {describe_array(dtype, shape)}, not {member.dtype}")
        form = "(H, W, 3)" if member.kind == "image" else "()"
        if (member.kind == "image" and len(shape) != 3) or (member.kind == "scalar" and shape):
            raise Invalid(f"{name} has shape {shape}, not {form}")
    declared = math.prod(shape) * dtype.itemsize
    if info.file_size != offset + declared:
        raise Invalid(
            f"{name} declares {declared} bytes of {describe_array(dtype, shape)} "
            f"but holds {info.file_size - offset}"
        )
    return Header(tuple(shape), fortran_order, dtype, offset)


def describe_array(dtype: np.dtype, shape: tuple) -> str:
    return f"{dtype.newbyteorder('=').name} values of shape {tuple(shape)}"


def read_data(archive: zipfile.ZipFile, info: zipfile.ZipInfo, header: Header) -> bytes:
    """The member's data bytes, all of them (so that zipfile checks their CRC)."""
    size = info.file_size - header.offset
    with archive.open(info) as stream:
        stream.read(header.offset)
        data = stream.read(size)
        if len(data) != size or stream.read(1):
            raise Invalid(f"{info.filename} does not hold the {size} bytes it declares")
    return data


def read_array(archive: zipfile.ZipFile, info: zipfile.ZipInfo, header: Header) -> np.ndarray:
    """The member's array, in native byte order and writable."""
    data = read_data(archive, info, header)
    values = np.frombuffer(data, header.dtype).reshape(
        header.shape, order="F" if header.fortran_order else "C"
    )
    return values.astype(header.dtype.newbyteorder("="), order="C")


def read_text(archive: zipfile.ZipFile, info: zipfile.ZipInfo, header: Header) -> str:
    data = read_data(archive, info, header)
    encoding = "utf-32-be" if header.dtype.str.startswith(">") else "utf-32-le"
    try:
        return data.decode(encoding).rstrip("\0")  # numpy pads unicode with NULs
    except UnicodeDecodeError:
        raise Invalid(f"{info.filename} is not valid text") from None
