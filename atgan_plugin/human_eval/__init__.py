"""The paper's human evaluation (appendix D.4, Table 10) as a local page: ``atgan human-eval RUN_DIR``.

- :mod:`.items`: the item set, the same ``(z, y)`` through G_orig and G_attack (and real test
  images as a control), made once per run folder and shuffled per rater;
- :mod:`.answers`: one JSON-lines file per rater, every answer fsync-ed as it is given;
- :mod:`.table`: Table 10 with 95 % intervals and rater agreement;
- :mod:`.export`: ``table10.md``/``.json`` and the CSV files for crowd platforms;
- :mod:`.server`: the page, served by the standard library on 127.0.0.1, answering only its own
  page on this machine (:mod:`.request_checks`), one server per run folder (:mod:`.server_lock`).
"""

from atgan_plugin.human_eval.answers import Answer, AnswersFileError, append_answer, read_all_answers
from atgan_plugin.human_eval.export import write_csv, write_table
from atgan_plugin.human_eval.items import ItemSet, RunFolderError, build_items, load_items
from atgan_plugin.human_eval.server import HumanEvalApp, ServerBusyError, make_server
from atgan_plugin.human_eval.table import render_markdown, table10

__all__ = [
    "Answer",
    "AnswersFileError",
    "HumanEvalApp",
    "ItemSet",
    "RunFolderError",
    "ServerBusyError",
    "append_answer",
    "build_items",
    "load_items",
    "make_server",
    "read_all_answers",
    "render_markdown",
    "table10",
    "write_csv",
    "write_table",
]
