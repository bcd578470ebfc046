/// Placeholder.
enum PSPlotPlaceholder {}
