"""Analysis, segmentation and personalisation: scores that live with the customer (CLV, RFM,
learned propensities), declarative segments, the offer catalogue and next-best-action
``Decide``, and Parquet/DuckDB reports. The built-in plugin is :mod:`shopkeeper.analysis.plugin`."""
