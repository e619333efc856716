"""the keyword index of segments

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 12:40:00.000000

Full-text search over completed segments, in each dialect's own engine: an FTS5 table on SQLite
(unicode61 tokens, diacritics folded; BM25), a tsvector column with a GIN index on PostgreSQL
('simple' configuration: no stemming, any language; ts_rank_cd). Not a model table: the index
is written and read by `conduit/services/datasets/keywords.py` only, and Alembic's comparison
leaves `rag_…` tables out (`conduit.db.migrations.index_table`).
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(
            'CREATE TABLE rag_keywords ('
            ' segment_id VARCHAR(36) PRIMARY KEY,'
            ' dataset_id VARCHAR(36) NOT NULL,'
            ' tsv TSVECTOR NOT NULL)'
        )
        op.execute('CREATE INDEX ix_rag_keywords_tsv ON rag_keywords USING GIN (tsv)')
        op.execute('CREATE INDEX ix_rag_keywords_dataset ON rag_keywords (dataset_id)')
    else:
        op.execute(
            'CREATE VIRTUAL TABLE rag_keywords USING fts5('
            'content, segment_id UNINDEXED, dataset_id UNINDEXED, '
            "tokenize='unicode61 remove_diacritics 2')"
        )


def downgrade() -> None:
    op.execute('DROP TABLE rag_keywords')
