import PSMath

/// The hashing trick (`psserver --hash-features D`): every feature id `f` of a sparse data set becomes row
/// `hash(f) mod D` of a table of `D` rows, whatever the ids.
///
/// `hash` is splitmix64's output function applied to `f + 0x9E3779B97F4A7C15` (the first value of a splitmix64
/// generator seeded with `f`), on unsigned 64-bit integers with wrapping arithmetic:
///
/// ```
/// z = f + 0x9E3779B97F4A7C15
/// z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
/// z = (z ^ (z >> 27)) * 0x94D049BB133111EB
/// hash(f) = z ^ (z >> 31)
/// ```
///
/// `f` is the 0-based feature id (a LIBSVM index minus 1). The function is fixed (golden values in
/// `FeatureHashingTests`): changing it would move every weight of a hashed checkpoint. Entries of one row that land
/// on the same table row are summed (in the order of the row), so a hashed row stays sorted and unique.
///
/// ```swift
/// FeatureHashing.hash(0)                    // 0xE220A8397B1DCDAF
/// FeatureHashing.row(of: 4_294_967_295, rows: 4096)   // 448 (0x73B13BA2AFF181C0 mod 4096)
/// ```
public enum FeatureHashing {
    /// The largest table `--hash-features` may ask for: 2^31 rows.
    public static let maximumRows = 1 << 31

    /// The documented 64-bit hash of feature id `id`: splitmix64's first output from seed `id` (its finaliser of
    /// `id + 0x9E3779B97F4A7C15`).
    public static func hash(_ id: UInt64) -> UInt64 {
        var generator = SplitMix64(seed: id)
        return generator.next()
    }

    /// The table row of feature `id` in a table of `rows` rows (1...maximumRows): `hash(id) mod rows`.
    public static func row(of id: UInt64, rows: Int) -> UInt32 {
        precondition(rows >= 1 && rows <= maximumRows, "FeatureHashing: rows \(rows) out of range")
        return UInt32(hash(id) % UInt64(rows))
    }

    /// Hashes the entries `ids[start...]` (one data row, any order) in place into `rows` rows: the ids become table
    /// rows, sorted, with the values of entries that share a row summed in their original order; the arrays are
    /// shortened by the number of collisions.
    static func foldRow(ids: inout [UInt32], values: inout [Float], from start: Int, rows: Int) {
        let count = ids.count - start
        guard count > 0 else { return }
        // (row, position) keys sort by row, then by the entry's position, so the sums run in the row's order.
        var keys: [(row: UInt32, position: Int)] = []
        keys.reserveCapacity(count)
        for position in start..<ids.count {
            keys.append((row(of: UInt64(ids[position]), rows: rows), position))
        }
        keys.sort { $0.row != $1.row ? $0.row < $1.row : $0.position < $1.position }
        let original = Array(values[start...])
        var end = start
        for key in keys {
            let value = original[key.position - start]
            if end > start, ids[end - 1] == key.row {
                values[end - 1] += value
            } else {
                ids[end] = key.row
                values[end] = value
                end += 1
            }
        }
        ids.removeSubrange(end...)
        values.removeSubrange(end...)
    }
}
