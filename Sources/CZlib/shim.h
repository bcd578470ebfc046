// zlib (Debian zlib1g-dev): used only to read gzip-compressed IDX files such as Fashion-MNIST.
#include <zlib.h>
