"""What the results mean: pure functions over DataFrames, plotly figures, the HTML report.

Needs pandas and pyarrow only: never imports `trainables`, torch or Ray.
"""
