"""0005: each account's Amazon refunds poll starts again, as on its first run (30 days back).

Until this step the poll read only Amazon's RefundEventList; it now also reads the A-to-z Guarantee claims and
chargebacks the Finances API lists apart (GuaranteeClaimEventList, ChargebackEventList). Those of the last 48
hours would be met by the next run anyway; older ones would never be, and the orders' Amazon totals
(orders.amazon_refunded) would stay short of them, so a refund made later could pay the buyer again. Removing
the poll's cursor makes its next run read the last 30 days again: refunds already stored are recognised by
their natural key and neither stored nor counted twice, while claims and chargebacks are new and are stored
and counted. No schema changes."""
from __future__ import annotations

from sqlalchemy.engine import Connection

NAME = "read Amazon refunds again, for claims and chargebacks"


def upgrade(conn: Connection) -> None:
    # The kind is daemon.pipeline.jobs.AMAZON_REFUNDS, written out: a released step never changes with the code.
    conn.exec_driver_sql("DELETE FROM cursors WHERE kind = 'amazon_refunds'")
