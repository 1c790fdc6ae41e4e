/* Reading a file's bytes where they lie in the page cache, through a shared mapping, instead
 * of copying them out with pread: for a consumer that only looks at them (the upload's
 * SHA-256). A page that cannot be read through a mapping raises SIGBUS where pread would
 * return an error (the file was cut short under the reader, or the disk failed to read back
 * a page the cache had let go); the reading thread catches it, and the read fails with -EIO,
 * as pread's would. The server does not die of it. */
#ifndef HU_MAPPED_READ_H
#define HU_MAPPED_READ_H

#include <stddef.h>
#include <stdint.h>

typedef void (*hu_mapped_fn)(void *arg, const char *p, size_t n);

/* Calls fn(arg, p, n) over the bytes [from, to) of fd in order, at most step (> 0) bytes a
 * call, mapping a window of the file at a time. 0 when all were passed; -EIO when the file
 * ends before to or a page could not be read (fn saw only bytes the file has, those before
 * it); another negative errno when the file could not be mapped or SIGBUS not caught (the
 * caller reads the rest, from where fn stopped, another way). */
int hu_mapped_read(int fd, uint64_t from, uint64_t to, size_t step, hu_mapped_fn fn, void *arg);

#endif
