/* proc_uapi.h - the kernel interfaces the process backend's dirty tracking
 * uses that Debian 12's headers (linux-libc-dev 6.1) do not have yet.
 *
 * Values from the kernel's UAPI headers as of Linux 6.7, where they appeared,
 * and unchanged through 6.18 (the kernel this was written on):
 *   include/uapi/linux/userfaultfd.h  UFFD_FEATURE_WP_UNPOPULATED (6.4),
 *                                     UFFD_FEATURE_WP_ASYNC (6.7), UFFD_USER_MODE_ONLY (5.11)
 *   include/uapi/linux/fs.h           PAGEMAP_SCAN, struct pm_scan_arg,
 *                                     struct page_region, PAGE_IS_*, PM_SCAN_* (6.7)
 * Each definition is guarded, so newer system headers take precedence. Whether
 * the running kernel has them is checked at run time (vmm/proc.c). */
#ifndef FERRY_VMM_PROC_UAPI_H
#define FERRY_VMM_PROC_UAPI_H

#include <linux/fs.h>
#include <linux/userfaultfd.h>
#include <stdint.h>
#include <sys/ioctl.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

#ifndef PAGEMAP_SCAN
/* Categories a page can be in (pm_scan_arg masks, page_region.categories). */
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#define PAGE_IS_HUGE (1 << 6)
#define PAGE_IS_SOFT_DIRTY (1 << 7)

/* A run of pages [start, end) with the same categories. */
struct page_region {
    uint64_t start;
    uint64_t end;
    uint64_t categories;
};

/* Flags: write-protect what matched; fail on a range without async WP. */
#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)

struct pm_scan_arg {
    uint64_t size;                /* sizeof(struct pm_scan_arg) */
    uint64_t flags;
    uint64_t start, end;          /* the address range to walk */
    uint64_t walk_end;            /* out: where the walk stopped */
    uint64_t vec, vec_len;        /* out: struct page_region array */
    uint64_t max_pages;           /* 0: no limit */
    uint64_t category_inverted;
    uint64_t category_mask;       /* all of these (after inversion) */
    uint64_t category_anyof_mask;
    uint64_t return_mask;         /* categories reported in page_region */
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

#endif
