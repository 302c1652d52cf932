"""ggml tensor types (block size, bytes per block) and llama.cpp file-type names.

Tables, not logic: they decide how many bytes a tensor occupies, hence where a GGUF file
must end. Sizes follow ggml's ``ggml-common.h`` and Ollama's ``fs/ggml`` (v0.33); the test
suite checks them against the ``gguf`` package's ``GGML_QUANT_SIZES``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GGMLType:
    name: str
    block_size: int  # elements per block
    type_size: int  # bytes per block


GGML_TYPES: dict[int, GGMLType] = {
    t_id: GGMLType(name, block, size)
    for t_id, (name, block, size) in {
        0: ("F32", 1, 4),
        1: ("F16", 1, 2),
        2: ("Q4_0", 32, 18),
        3: ("Q4_1", 32, 20),
        # 4 was Q4_2 in old ggml; Ollama reads it as MXFP4 (early gpt-oss files carry it).
        4: ("MXFP4", 32, 17),
        6: ("Q5_0", 32, 22),
        7: ("Q5_1", 32, 24),
        8: ("Q8_0", 32, 34),
        # ggml's block_q8_1 is two halves + 32 bytes; gguf-py still says 40 (floats).
        9: ("Q8_1", 32, 36),
        10: ("Q2_K", 256, 84),
        11: ("Q3_K", 256, 110),
        12: ("Q4_K", 256, 144),
        13: ("Q5_K", 256, 176),
        14: ("Q6_K", 256, 210),
        15: ("Q8_K", 256, 292),
        16: ("IQ2_XXS", 256, 66),
        17: ("IQ2_XS", 256, 74),
        18: ("IQ3_XXS", 256, 98),
        19: ("IQ1_S", 256, 50),
        20: ("IQ4_NL", 32, 18),
        21: ("IQ3_S", 256, 110),
        22: ("IQ2_S", 256, 82),
        23: ("IQ4_XS", 256, 136),
        24: ("I8", 1, 1),
        25: ("I16", 1, 2),
        26: ("I32", 1, 4),
        27: ("I64", 1, 8),
        28: ("F64", 1, 8),
        29: ("IQ1_M", 256, 56),
        30: ("BF16", 1, 2),
        # 31-33 and 36-38: interleaved Q4_0/IQ4_NL layouts, since removed from ggml; files
        # written in late 2024 may still carry them, and their size is that of Q4_0.
        31: ("Q4_0_4_4", 32, 18),
        32: ("Q4_0_4_8", 32, 18),
        33: ("Q4_0_8_8", 32, 18),
        34: ("TQ1_0", 256, 54),
        35: ("TQ2_0", 256, 66),
        36: ("IQ4_NL_4_4", 32, 18),
        37: ("IQ4_NL_4_8", 32, 18),
        38: ("IQ4_NL_8_8", 32, 18),
        39: ("MXFP4", 32, 17),
        40: ("NVFP4", 64, 36),
        41: ("Q1_0", 128, 18),
    }.items()
}

# general.file_type (llama.cpp's llama_ftype / gguf-py's LlamaFileType), named as Ollama shows it.
FILE_TYPE_NAMES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    4: "MXFP4",  # llama.cpp's retired Q4_1_SOME_F16; Ollama reuses it for MXFP4
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    33: "Q4_0_4_4",
    34: "Q4_0_4_8",
    35: "Q4_0_8_8",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
    39: "NVFP4",
    40: "Q1_0",
    1024: "GUESSED",
}



def file_type_name(file_type: int | None) -> str | None:
    """``15`` → ``"Q4_K_M"``; None for an absent or unknown file type."""
    return None if file_type is None else FILE_TYPE_NAMES.get(file_type)


def tensor_nbytes(ggml_type: int, dims: tuple[int, ...]) -> int:
    """Bytes a tensor of this type and shape occupies. KeyError for an unknown type;
    ValueError if the first dimension is not a whole number of blocks."""
    t = GGML_TYPES[ggml_type]
    if not dims:
        dims = (1,)
    if dims[0] % t.block_size:
        raise ValueError(f"{dims[0]} elements per row is not a multiple of {t.block_size}")
    count = 1
    for d in dims:
        count *= d
    return count // t.block_size * t.type_size
