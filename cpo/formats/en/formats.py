"""English in the panel: Django's English formats, but the short forms (alerts, invoice PDFs)
are the year-month-day and 24-hour ones operators read, not the US month/day/year."""

SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
