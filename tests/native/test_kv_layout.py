"""Where one KV cache that the slots share puts each sequence's cells (`vendor/patches/0013`).

A step of 64 rows or more (several slots' drafts) runs the CPU's tiled flash attention, which
skips a 64-cell KV tile only when every row of a 64-row query tile is masked from all of it. With
llama.cpp's placement (each token in the first free cell) sequences decoding in step interleave
their cells, so most tiles hold several sequences and are computed for each. Here each
sequence's cells fill 64-cell pages of their own, taken from the bottom of the cache."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
from mr._native.testing import kv_cell_layout

from mr._native import Model

PAGE = 64


@pytest.fixture(scope="module")
def tiny(tiny_gguf) -> Model:
    return Model(str(tiny_gguf))


def owners(layout: dict[int, list[int]]) -> dict[int, set[int]]:
    """The sequences holding cells in each 64-cell page."""
    pages: dict[int, set[int]] = defaultdict(set)
    for seq, cells in layout.items():
        for cell in cells:
            pages[cell // PAGE].add(seq)
    return pages


def all_cells(layout: dict[int, list[int]]) -> list[int]:
    return [cell for cells in layout.values() for cell in cells]


def test_sequences_decoding_in_step_keep_pages_of_their_own(tiny) -> None:
    # Four slots: 30-token prompts in one step, then twelve steps of a token and an 8-token draft
    # each (117 cells a sequence: two pages).
    steps = [[(s, 30) for s in range(4)]] + [[(s, 9) for s in range(4)] for _ in range(12)]
    layout = kv_cell_layout(tiny, 2048, steps)
    assert sorted(len(cells) for cells in layout.values()) == [138] * 4
    cells = all_cells(layout)
    assert len(set(cells)) == len(cells)
    pages = owners(layout)
    assert all(len(seqs) == 1 for seqs in pages.values()), dict(pages)
    # No page is left half empty but each sequence's last, and none is skipped.
    assert len(pages) == sum(math.ceil(len(c) / PAGE) for c in layout.values())
    assert max(cells) < len(pages) * PAGE
    # llama.cpp's own placement (what a cache not paged does) interleaves the four.
    unpaged = owners(kv_cell_layout(tiny, 2048, steps, paged=False))
    assert sum(len(seqs) > 1 for seqs in unpaged.values()) >= len(unpaged) // 2


def test_one_sequence_takes_the_cells_from_the_bottom_in_order(tiny) -> None:
    layout = kv_cell_layout(tiny, 1024, [[(0, 50)]] * 4)
    assert layout[0] == list(range(200))


def test_a_cache_with_no_free_page_left_still_takes_every_free_cell(tiny) -> None:
    # 256 cells: three sequences of 60 hold three pages; a fourth of 70 fills the last page, then
    # the free cells at the ends of the others' pages: as many tokens fit as without pages.
    steps = [[(s, 60) for s in range(3)], [(3, 70)], [(4, 6)]]
    layout = kv_cell_layout(tiny, 256, steps)
    cells = all_cells(layout)
    assert len(set(cells)) == len(cells) == 256
    assert layout[3][:PAGE] == list(range(3 * PAGE, 4 * PAGE))
