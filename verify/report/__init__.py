"""The claim ledger a reviewer reads: ``python -m verify.report``.

``verify.report.ledger`` holds the fixed content (the paper's claims K1–K8 and the catalogue ids that check each);
``verify.report.core`` combines it with check records into HTML, Markdown and JSON.
"""
from verify.report.core import build_ledger, main, write_report

__all__ = ["build_ledger", "main", "write_report"]
