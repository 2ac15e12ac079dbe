"""Supervisors' reports: figures computed from the chats of a period, drawn as SVG, downloadable as CSV.

    figures.py  the computation (pure): waits, first response, handling, abandonment, transfers …
    charts.py   server-rendered SVG bar charts (pure; no scripts)
    report.py   one period's report: every figure overall and by agency, topic and officer; its CSV
    summary.py  the daily summary, yesterday's figures in a few lines (pure); poster.py posts it to each
                agency's supervisors' room once a day
"""
