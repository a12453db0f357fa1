/* args.c - command line parser shared by the guest and the VMM.
 * Freestanding on purpose: no libc, no allocation, bounded by len. */
#include "args.h"
#include "protocol.h"

#include <stdbool.h>

#define GIB (1024ull * 1024 * 1024)
#define MIB (1024ull * 1024)

/* --- a tiny message builder (no snprintf in the guest) --------------------- */

typedef struct {
    char *buf;
    size_t cap, len;
} msg_t;

static void msg_put(msg_t *m, const char *s, size_t n)
{
    for (size_t i = 0; i < n && m->len + 1 < m->cap; i++)
        m->buf[m->len++] = s[i];
    if (m->cap)
        m->buf[m->len] = '\0';
}

static void msg_str(msg_t *m, const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    msg_put(m, s, n);
}

static void msg_u64(msg_t *m, uint64_t v)
{
    char digits[20];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        msg_put(m, &digits[--n], 1);
}

static int fail(char *err, size_t errlen, const char *what, const char *tok, size_t toklen,
                const char *hint)
{
    msg_t m = {err, errlen, 0};
    msg_str(&m, "cmdline: ");
    msg_str(&m, what);
    if (tok) {
        msg_str(&m, " '");
        msg_put(&m, tok, toklen > 64 ? 64 : toklen);
        msg_str(&m, "'");
    }
    if (hint) {
        msg_str(&m, " (");
        msg_str(&m, hint);
        msg_str(&m, ")");
    }
    return -1;
}

/* --- tokens ---------------------------------------------------------------- */

static bool span_is(const char *s, size_t n, const char *word)
{
    size_t i = 0;
    for (; i < n; i++)
        if (word[i] != s[i])
            return false;
    return word[i] == '\0';
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Parses a decimal or 0x-hex number with an optional K/M/G suffix (binary
 * multiples). Returns false on junk, an empty number or overflow. */
static bool parse_size(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0, base = 10, mult = 1;
    size_t i = 0;
    if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        i = 2;
    }
    size_t digits_end = n;
    if (base == 10 && n > 0) {
        switch (s[n - 1]) {
        case 'k': case 'K': mult = 1024; digits_end = n - 1; break;
        case 'm': case 'M': mult = MIB; digits_end = n - 1; break;
        case 'g': case 'G': mult = GIB; digits_end = n - 1; break;
        default: break;
        }
    }
    if (i >= digits_end)
        return false;
    for (; i < digits_end; i++) {
        char c = s[i];
        uint64_t d;
        if (c >= '0' && c <= '9')
            d = (uint64_t)(c - '0');
        else if (base == 16 && c >= 'a' && c <= 'f')
            d = (uint64_t)(c - 'a' + 10);
        else if (base == 16 && c >= 'A' && c <= 'F')
            d = (uint64_t)(c - 'A' + 10);
        else
            return false;
        if (v > (UINT64_MAX - d) / base)
            return false;
        v = v * base + d;
    }
    if (mult > 1 && v > UINT64_MAX / mult)
        return false;
    *out = v * mult;
    return true;
}

/* --- the parameters -------------------------------------------------------- */

enum {
    KEY_PROFILE, KEY_HOT, KEY_WSS, KEY_RATE, KEY_SEED, KEY_TSC_KHZ, KEY_HB,
    KEY_PRINT, KEY_VERIFY, KEY_PAGES, KEY_COUNT
};

typedef struct {
    const char *name;
    uint64_t min, max;
} key_spec_t;

static const key_spec_t keys[KEY_COUNT] = {
    [KEY_PROFILE] = {"profile", 0, 0},
    [KEY_HOT]     = {"hot", 4096, 64 * GIB},
    [KEY_WSS]     = {"wss", 4096, 64 * GIB},
    [KEY_RATE]    = {"rate", 0, 64 * GIB},
    [KEY_SEED]    = {"seed", 0, UINT64_MAX},
    [KEY_TSC_KHZ] = {"tsc_khz", 1000, 100000000},
    [KEY_HB]      = {"hb", 1, 60000},
    [KEY_PRINT]   = {"print", 0, 3600000},
    [KEY_VERIFY]  = {"verify", 0, 1u << 30},
    [KEY_PAGES]   = {"pages", 1, 65536},
};

static const char *const profile_names[] = {
    [GUEST_PROFILE_IDLE] = "idle",
    [GUEST_PROFILE_WEB] = "web",
    [GUEST_PROFILE_DB] = "db",
    [GUEST_PROFILE_STREAM] = "stream",
    [GUEST_PROFILE_TEST] = "test",
};
#define PROFILE_COUNT (sizeof profile_names / sizeof profile_names[0])

const char *guest_profile_name(uint32_t profile)
{
    return profile < PROFILE_COUNT ? profile_names[profile] : "?";
}

static void set_defaults(guest_args_t *a)
{
    *a = (guest_args_t){
        .profile = GUEST_PROFILE_IDLE,
        .seed = 1,
        .heartbeat_ms = 10,
        .print_ms = 1000,
        .verify_rate = 262144,
        .verify_auto = true,
    };
}

/* Values that depend on the profile, unless the command line set them. */
static void apply_profile_defaults(guest_args_t *a, uint32_t given)
{
    switch (a->profile) {
    case GUEST_PROFILE_WEB:
        if (!(given & (1u << KEY_HOT))) a->hot_bytes = 64 * MIB;
        if (!(given & (1u << KEY_RATE))) a->rate_bytes = 100 * MIB;
        break;
    case GUEST_PROFILE_DB:
        if (!(given & (1u << KEY_WSS))) a->wss_bytes = 256 * MIB;
        if (!(given & (1u << KEY_RATE))) a->rate_bytes = 100 * MIB;
        break;
    case GUEST_PROFILE_STREAM:
        if (!(given & (1u << KEY_RATE))) a->rate_bytes = 500 * MIB;
        break;
    case GUEST_PROFILE_TEST:
        if (!(given & (1u << KEY_PAGES))) a->test_pages = 64;
        break;
    default:
        break;
    }
}

/* Which keys each profile accepts beyond the common ones. */
static uint32_t profile_keys(uint32_t profile)
{
    switch (profile) {
    case GUEST_PROFILE_WEB: return 1u << KEY_HOT | 1u << KEY_RATE;
    case GUEST_PROFILE_DB: return 1u << KEY_WSS | 1u << KEY_RATE;
    case GUEST_PROFILE_STREAM: return 1u << KEY_WSS | 1u << KEY_RATE;
    case GUEST_PROFILE_TEST: return 1u << KEY_PAGES;
    default: return 0;
    }
}

static int set_key(guest_args_t *a, int key, const char *val, size_t vlen, char *err, size_t errlen)
{
    if (key == KEY_PROFILE) {
        for (uint32_t p = 0; p < PROFILE_COUNT; p++) {
            if (span_is(val, vlen, profile_names[p])) {
                a->profile = p;
                return 0;
            }
        }
        return fail(err, errlen, "unknown profile", val, vlen, "known: idle, web, db, stream, test");
    }
    uint64_t v;
    if (!parse_size(val, vlen, &v))
        return fail(err, errlen, "not a number:", val, vlen, keys[key].name);
    if (v < keys[key].min || v > keys[key].max) {
        char range[96];
        msg_t m = {range, sizeof range, 0};
        msg_str(&m, keys[key].name);
        msg_str(&m, " must be in ");
        msg_u64(&m, keys[key].min);
        msg_str(&m, "..");
        msg_u64(&m, keys[key].max);
        return fail(err, errlen, "out of range:", val, vlen, range);
    }
    switch (key) {
    case KEY_HOT: a->hot_bytes = v; break;
    case KEY_WSS: a->wss_bytes = v; break;
    case KEY_RATE: a->rate_bytes = v; break;
    case KEY_SEED: a->seed = v; break;
    case KEY_TSC_KHZ: a->tsc_khz = (uint32_t)v; break;
    case KEY_HB: a->heartbeat_ms = (uint32_t)v; break;
    case KEY_PRINT: a->print_ms = (uint32_t)v; break;
    case KEY_VERIFY:
        a->verify_rate = (uint32_t)v;
        a->verify_auto = false;
        break;
    case KEY_PAGES: a->test_pages = (uint32_t)v; break;
    default: break;
    }
    return 0;
}

int guest_args_parse(const char *cmdline, size_t len, guest_args_t *args, char *err,
                     size_t errlen)
{
    if (errlen)
        err[0] = '\0';
    set_defaults(args);
    if (len > GUEST_CMDLINE_MAX)
        return fail(err, errlen, "longer than 1024 bytes", 0, 0, 0);

    uint32_t given = 0;
    size_t i = 0;
    for (int token = 0;; token++) {
        while (i < len && is_space(cmdline[i]))
            i++;
        if (i >= len || cmdline[i] == '\0')
            break;
        const char *tok = cmdline + i;
        size_t n = 0, eq = 0;
        while (i < len && cmdline[i] != '\0' && !is_space(cmdline[i])) {
            if (cmdline[i] == '=' && eq == 0)
                eq = n + 1;  /* 1-based so that 0 means "none" */
            i++;
            n++;
        }
        if (eq == 0) {
            if (token == 0)
                continue;  /* the image path a boot loader puts first */
            return fail(err, errlen, "expected key=value, got", tok, n, 0);
        }
        const char *key = tok, *val = tok + eq;
        size_t klen = eq - 1, vlen = n - eq;
        int k = -1;
        for (int j = 0; j < KEY_COUNT; j++)
            if (span_is(key, klen, keys[j].name))
                k = j;
        if (k < 0)
            return fail(err, errlen, "unknown parameter", key, klen,
                        "known: profile hot wss rate seed tsc_khz hb print verify pages");
        if (given & (1u << k))
            return fail(err, errlen, "parameter given twice:", key, klen, 0);
        given |= 1u << k;
        if (set_key(args, k, val, vlen, err, errlen) < 0)
            return -1;
    }

    uint32_t specific = 1u << KEY_HOT | 1u << KEY_WSS | 1u << KEY_RATE | 1u << KEY_PAGES;
    uint32_t stray = given & specific & ~profile_keys(args->profile);
    for (int j = 0; j < KEY_COUNT; j++) {
        if (stray & (1u << j)) {
            const char *name = keys[j].name;
            size_t nlen = 0;
            while (name[nlen])
                nlen++;
            return fail(err, errlen, "parameter does not apply to this profile:", name, nlen,
                        guest_profile_name(args->profile));
        }
    }
    apply_profile_defaults(args, given);
    return 0;
}

int guest_args_check_arena(const guest_args_t *a, uint64_t arena_bytes, char *err, size_t errlen)
{
    uint64_t need = 0;
    const char *what = 0;
    if (a->profile == GUEST_PROFILE_WEB) {
        need = a->hot_bytes;
        what = "hot set larger than the guest's usable memory";
    } else if (a->profile == GUEST_PROFILE_DB || a->profile == GUEST_PROFILE_STREAM) {
        need = a->wss_bytes;
        what = "working set larger than the guest's usable memory";
    } else if (a->profile == GUEST_PROFILE_TEST) {
        need = (uint64_t)a->test_pages * 4096;
        what = "more test pages than the guest's usable memory";
    }
    if (need <= arena_bytes)
        return 0;
    char detail[96];
    msg_t m = {detail, sizeof detail, 0};
    msg_u64(&m, need >> 20);
    msg_str(&m, " MiB > ");
    msg_u64(&m, arena_bytes >> 20);
    msg_str(&m, " MiB usable");
    return fail(err, errlen, what, 0, 0, detail);
}

uint64_t guest_arena_estimate(uint64_t memory_bytes)
{
    /* 1 MiB low memory + at most 3 MiB of kernel image and page tables, the
     * self-check table (8 bytes per 4 KiB frame, counting a 1 GiB hole below
     * 4 GiB) and 2 MiB of alignment slack. */
    uint64_t overhead = 6 * MIB + (memory_bytes + GIB) / 512;
    return memory_bytes > overhead ? memory_bytes - overhead : 0;
}
