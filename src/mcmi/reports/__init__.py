"""Tables and figures from experiment results."""
from mcmi.reports.tables import fmt_mean_std, markdown_table, mean_std

__all__ = ["fmt_mean_std", "markdown_table", "mean_std"]
