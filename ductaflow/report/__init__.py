"""Reading results back for people: the HTML report, status rows, SQL queries."""
