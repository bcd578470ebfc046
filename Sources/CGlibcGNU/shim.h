// Linux system calls that glibc declares only under _GNU_SOURCE, which Swift's Glibc module is not built with.
// Declared here by hand, exactly as in glibc's <fcntl.h>; glibc itself provides the symbols.
#ifndef CGLIBCGNU_SHIM_H
#define CGLIBCGNU_SHIM_H

#if defined(__linux__)
/// sync_file_range(2): starts (or waits for) writeback of a byte range of a file; no metadata, no durability.
int sync_file_range(int fd, long offset, long nbytes, unsigned int flags);

/// The flag that starts writeback of the range's dirty pages without waiting for it.
#define CGLIBCGNU_SYNC_FILE_RANGE_WRITE 2u
#endif

#endif
