/* crc32c.h - CRC-32C (Castagnoli), as used by ext4, iSCSI and etcd's WAL.
 * A plain table-driven implementation: fast enough for the Raft log, where
 * fsync dominates. */
#ifndef FERRY_CRC32C_H
#define FERRY_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continues a checksum: crc32c(0, buf, n) starts one; crc32c(crc32c(0, a, n), b, m)
 * equals the checksum of a followed by b. */
uint32_t crc32c(uint32_t crc, const void *data, size_t len);

#endif
