// The one C header SwiftPS imports: Debian's OpenBLAS CBLAS interface (libopenblas-dev).
#include <cblas.h>

// OpenBLAS extensions declared in cblas.h; listed here so readers know which ones we use.
// void openblas_set_num_threads(int num_threads);
// int openblas_get_num_threads(void);
// char *openblas_get_corename(void);
