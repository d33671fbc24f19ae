"""Interactive explorers (ipywidgets) of the notebooks' "Going further" sections, built from measured tables."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from IPython.display import display

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["pruning_explorer"]


def pruning_explorer(table: pd.DataFrame, keep: Sequence[int]) -> None:
    """A slider over the numbers of features kept (``keep``) showing the clean and robust accuracy of each (head,
    ranking) of :func:`helpers.features.pruning_curves`' ``table`` (Paper 1, Sec. IV); prints a note without ipywidgets."""
    try:
        import ipywidgets as widgets
    except ImportError:
        print("ipywidgets is not installed")
        return

    def show_kept(k):
        display(table[table.kept == k].set_index(["head", "ranking"])[["clean", "robust"]].style.format("{:.1%}"))

    widgets.interact(show_kept, k=widgets.SelectionSlider(options=sorted(keep), value=max(keep), description="kept"))
