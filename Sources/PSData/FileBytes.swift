import CZlib
import Foundation

/// Reads whole data files into memory, decompressing gzip (magic `1f 8b`) through zlib.
enum FileBytes {
    /// The file's bytes, gunzipped if it starts with the gzip magic; a missing file is an error naming the path.
    static func read(_ path: String) throws(DataError) -> [UInt8] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw DataError(file: path, message: "no such file")
        }
        guard !isDirectory.boolValue else { throw DataError(file: path, message: "is a directory, not a file") }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw DataError(file: path, message: "cannot read: \(error.localizedDescription)")
        }
        if data.count >= 2, data[data.startIndex] == 0x1F, data[data.startIndex + 1] == 0x8B {
            return try gunzip(path, compressedSize: data.count)
        }
        return [UInt8](data)
    }

    /// Decompresses a gzip file with gzopen/gzread into a buffer that grows geometrically.
    static func gunzip(_ path: String, compressedSize: Int) throws(DataError) -> [UInt8] {
        guard let file = gzopen(path, "rb") else { throw DataError(file: path, message: "gzopen failed") }
        var buffer = [UInt8](repeating: 0, count: max(1 << 16, compressedSize * 4))
        var used = 0
        while true {
            if used == buffer.count {
                buffer.append(contentsOf: repeatElement(0, count: buffer.count))
            }
            let request = UInt32(min(buffer.count - used, Int(Int32.max)))
            let got = buffer.withUnsafeMutableBytes { raw in
                gzread(file, raw.baseAddress! + used, request)
            }
            if got < 0 {
                let message = gzipErrorMessage(file)
                gzclose(file)
                throw DataError(file: path, location: "decompressed byte offset \(used)", message: "gzip: \(message)")
            }
            if got == 0 { break }
            used += Int(got)
        }
        let closeResult = gzclose(file)
        guard closeResult == Z_OK else {
            let reason = closeResult == Z_BUF_ERROR ? "the gzip stream is truncated" : "gzip error \(closeResult)"
            throw DataError(file: path, location: "decompressed byte offset \(used)", message: reason)
        }
        buffer.removeSubrange(used...)
        return buffer
    }

    private static func gzipErrorMessage(_ file: gzFile) -> String {
        var code: Int32 = 0
        guard let text = gzerror(file, &code) else { return "error \(code)" }
        return String(cString: text)
    }
}
