import Foundation

/// One line of a chart.
public struct Series: Sendable, Equatable {
    /// The path's `id` in the SVG (unique in the document).
    public var id: String
    public var label: String
    public var color: String
    public var points: [(x: Double, y: Double)]
    public var width: Double = 1.5
    public var opacity: Double = 1
    public var dashed = false
    public var markers = false

    public init(id: String, label: String, color: String, points: [(x: Double, y: Double)]) {
        self.id = id
        self.label = label
        self.color = color
        self.points = points
    }

    public static func == (lhs: Series, rhs: Series) -> Bool {
        lhs.id == rhs.id && lhs.label == rhs.label && lhs.color == rhs.color
            && lhs.points.map(\.x) == rhs.points.map(\.x) && lhs.points.map(\.y) == rhs.points.map(\.y)
    }
}

/// A line chart drawn into a rectangle of an SVG document: frame, grid, ticks with labels, axis titles, one
/// `<path>` per series. The axes' ranges are nice ticks that cover every point (and `yInclude`, if given).
///
/// The chart's `<g>` records its ranges as `data-x-min`/`data-x-max`/`data-y-min`/`data-y-max`.
public struct LineChart: Sendable {
    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [Series]
    /// Values the y axis must include (such as 0 and 1 for an accuracy).
    public var yInclude: [Double] = []
    public var integerX = false

    public init(title: String, xLabel: String, yLabel: String, series: [Series]) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.series = series
    }

    /// The axes' ranges: nice ticks covering the data.
    public func ticks() -> (x: [Double], y: [Double]) {
        let points = series.flatMap(\.points).filter { $0.x.isFinite && $0.y.isFinite }
        let xs = points.map(\.x)
        let ys = points.map(\.y) + yInclude
        let x = Ticks.nice(low: xs.min() ?? 0, high: xs.max() ?? 1, count: 6, integer: integerX)
        let y = Ticks.nice(low: ys.min() ?? 0, high: ys.max() ?? 1, count: 5)
        return (x, y)
    }

    /// The chart as an SVG `<g>` filling `x, y, width, height`.
    public func render(x left: Double, y top: Double, width: Double, height: Double) -> String {
        let (xTicks, yTicks) = ticks()
        let plot = (left: left + 64, top: top + 28, right: left + width - 16, bottom: top + height - 44)
        let (x0, x1) = (xTicks.first!, xTicks.last!)
        let (y0, y1) = (yTicks.first!, yTicks.last!)
        func sx(_ value: Double) -> Double { plot.left + (value - x0) / (x1 - x0) * (plot.right - plot.left) }
        func sy(_ value: Double) -> Double { plot.bottom - (value - y0) / (y1 - y0) * (plot.bottom - plot.top) }
        var out =
            "<g class=\"chart\" data-x-min=\"\(x0)\" data-x-max=\"\(x1)\" data-y-min=\"\(y0)\" data-y-max=\"\(y1)\">\n"
        out += text(left + width / 2, top + 16, title, anchor: "middle", extra: " font-size=\"14\" font-weight=\"600\"")
        for tick in xTicks {
            out += line(sx(tick), plot.top, sx(tick), plot.bottom, "#e5e5e5")
            out += line(sx(tick), plot.bottom, sx(tick), plot.bottom + 4, "#444")
            out += text(sx(tick), plot.bottom + 16, Ticks.label(tick), anchor: "middle")
        }
        for tick in yTicks {
            out += line(plot.left, sy(tick), plot.right, sy(tick), "#e5e5e5")
            out += line(plot.left - 4, sy(tick), plot.left, sy(tick), "#444")
            out += text(plot.left - 7, sy(tick) + 4, Ticks.label(tick), anchor: "end")
        }
        out += "<rect x=\"\(f(plot.left))\" y=\"\(f(plot.top))\" width=\"\(f(plot.right - plot.left))\" "
        out += "height=\"\(f(plot.bottom - plot.top))\" fill=\"none\" stroke=\"#888\"/>\n"
        out += text((plot.left + plot.right) / 2, plot.bottom + 34, xLabel, anchor: "middle")
        let middle = (plot.top + plot.bottom) / 2
        out += text(
            left + 16, middle, yLabel, anchor: "middle",
            extra: " transform=\"rotate(-90 \(f(left + 16)) \(f(middle)))\"")
        for series in self.series {
            let finite = series.points.filter { $0.x.isFinite && $0.y.isFinite }
            let d = finite.enumerated().map {
                "\($0.offset == 0 ? "M" : "L")\(f(sx($0.element.x))) \(f(sy($0.element.y)))"
            }
            .joined()
            out += "<path id=\"\(SVG.escape(series.id))\" class=\"series\" data-points=\"\(finite.count)\" d=\"\(d)\" "
            out += "fill=\"none\" stroke=\"\(series.color)\" stroke-width=\"\(series.width)\""
            if series.opacity < 1 { out += " stroke-opacity=\"\(series.opacity)\"" }
            if series.dashed { out += " stroke-dasharray=\"6 4\"" }
            out += "><title>\(SVG.escape(series.label))</title></path>\n"
            if series.markers {
                for point in finite {
                    out +=
                        "<circle cx=\"\(f(sx(point.x)))\" cy=\"\(f(sy(point.y)))\" r=\"3\" fill=\"\(series.color)\"/>\n"
                }
            }
        }
        return out + "</g>\n"
    }

    private func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, _ color: String) -> String {
        "<line x1=\"\(f(x1))\" y1=\"\(f(y1))\" x2=\"\(f(x2))\" y2=\"\(f(y2))\" stroke=\"\(color)\"/>\n"
    }

    private func text(_ x: Double, _ y: Double, _ content: String, anchor: String, extra: String = "") -> String {
        "<text x=\"\(f(x))\" y=\"\(f(y))\" text-anchor=\"\(anchor)\"\(extra)>\(SVG.escape(content))</text>\n"
    }
}

/// SVG document helpers.
public enum SVG {
    /// The palette: one colour per run.
    public static let colors = ["#3569c9", "#d9534f", "#2e9d57", "#c98a14", "#7b52ab", "#17a2b8", "#e377c2", "#555555"]

    /// Text escaped for XML content and attribute values.
    public static func escape(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(character)
            }
        }
        return out
    }

    /// A whole document of `width` × `height` around `body`.
    public static func document(width: Double, height: Double, body: String) -> String {
        """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(f(width))" height="\(f(height))" \
        viewBox="0 0 \(f(width)) \(f(height))" font-family="sans-serif" font-size="11">
        <rect width="100%" height="100%" fill="white"/>
        \(body)</svg>

        """
    }

    /// A legend: a coloured line (dashed for a dashed series) and a label per entry, one per row, from `x, y`.
    public static func legend(x: Double, y: Double, entries: [(color: String, label: String)], dashed: Set<Int> = [])
        -> String
    {
        var out = "<g class=\"legend\">\n"
        for (index, entry) in entries.enumerated() {
            let row = y + Double(index) * 18
            out +=
                "<line x1=\"\(f(x))\" y1=\"\(f(row))\" x2=\"\(f(x + 24))\" y2=\"\(f(row))\" stroke=\"\(entry.color)\" "
            out += "stroke-width=\"3\"\(dashed.contains(index) ? " stroke-dasharray=\"6 4\"" : "")/>\n"
            out += "<text x=\"\(f(x + 30))\" y=\"\(f(row + 4))\">\(escape(entry.label))</text>\n"
        }
        return out + "</g>\n"
    }
}

/// A coordinate with at most one decimal.
func f(_ value: Double) -> String {
    let rounded = (value * 10).rounded() / 10
    return rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
}
