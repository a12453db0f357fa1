/* vm_spec.c - see vm_spec.h. */
#include "agent/vm_spec.h"
#include "vmm/vm.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

const char *vm_spec_bytes(uint64_t bytes, char *buf, size_t cap)
{
    static const char *const units[] = { "bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    double v = (double)bytes;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%llu bytes", (unsigned long long)bytes);
    else if (v == (double)(uint64_t)v)
        snprintf(buf, cap, "%llu %s", (unsigned long long)v, units[u]);
    else
        snprintf(buf, cap, "%.1f %s", v, units[u]);
    return buf;
}

int vm_spec_check_name(const char *name, char *err, size_t errlen)
{
    size_t len = strlen(name);
    if (len == 0 || len > VM_NAME_MAX) {
        snprintf(err, errlen, "a VM name has 1 to %d characters, '%.*s' has %zu", VM_NAME_MAX, 80, name, len);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!isalnum(c) && c != '-' && c != '_' && c != '.') {
            snprintf(err, errlen, "VM name '%s': only letters, digits, '-', '_' and '.' (not '%c')", name,
                     isprint(c) ? c : '?');
            return -1;
        }
    }
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        snprintf(err, errlen, "'%s' is not a VM name", name);
        return -1;
    }
    return 0;
}

int vm_spec_check_shape(uint64_t memory_bytes, uint64_t vcpus, char *err, size_t errlen)
{
    char have[32], lo[32], hi[32];
    if (memory_bytes < VM_MIN_MEMORY || memory_bytes > VM_MAX_MEMORY) {
        snprintf(err, errlen, "memory %s is out of range: a VM has %s to %s", vm_spec_bytes(memory_bytes, have, sizeof(have)),
                 vm_spec_bytes(VM_MIN_MEMORY, lo, sizeof(lo)), vm_spec_bytes(VM_MAX_MEMORY, hi, sizeof(hi)));
        return -1;
    }
    if (memory_bytes % (1u << 20)) {
        snprintf(err, errlen, "memory %llu bytes is not a whole number of MiB", (unsigned long long)memory_bytes);
        return -1;
    }
    if (vcpus < 1 || vcpus > VM_MAX_VCPUS) {
        snprintf(err, errlen, "%llu vCPUs is out of range: a VM has 1 to %d", (unsigned long long)vcpus, VM_MAX_VCPUS);
        return -1;
    }
    return 0;
}

/* guest/args.c prefixes its messages with "cmdline: "; here the user wrote a
 * profile, not a command line, so the prefix would only confuse. */
static const char *without_cmdline_prefix(const char *message)
{
    return strncmp(message, "cmdline: ", 9) == 0 ? message + 9 : message;
}

/* Checks a command line the way vm_new() will: the guest's parser, then the
 * profile's sizes against the memory the guest will find. */
static int check_cmdline(const char *cmdline, uint64_t memory_bytes, char *why, size_t whylen)
{
    guest_args_t args;
    char message[256];
    if (guest_args_parse(cmdline, strlen(cmdline), &args, message, sizeof(message)) != 0 ||
        guest_args_check_arena(&args, guest_arena_estimate(memory_bytes), message, sizeof(message)) != 0) {
        snprintf(why, whylen, "%s", without_cmdline_prefix(message));
        return -1;
    }
    return 0;
}

static bool profile_char_ok(char c)
{
    return isalnum((unsigned char)c) || c == '=' || c == ',' || c == ':' || c == '-' || c == '_' || c == '.';
}

/* "web:hot=64M,rate=200M" -> "profile=web hot=64M rate=200M". */
static int profile_to_cmdline(const char *spec, char *out, size_t cap, char *why, size_t whylen)
{
    size_t len = strlen(spec);
    for (size_t i = 0; i < len; i++) {
        if (!profile_char_ok(spec[i])) {
            snprintf(why, whylen, "character %zu is '%c'; a profile is NAME[:KEY=VALUE,...] of letters, digits "
                     "and '-_.'", i + 1, isprint((unsigned char)spec[i]) ? spec[i] : '?');
            return -1;
        }
    }
    const char *colon = strchr(spec, ':');
    size_t name_len = colon ? (size_t)(colon - spec) : len;
    if (name_len == 0) {
        snprintf(why, whylen, "no profile name before ':' (known: idle, web, db, stream, test)");
        return -1;
    }
    if (memchr(spec, '=', name_len)) {
        snprintf(why, whylen, "write the profile's name first, then ':' and its KEY=VALUE settings, "
                 "e.g. web:hot=64M,rate=200M");
        return -1;
    }
    int n = snprintf(out, cap, "profile=%.*s", (int)name_len, spec);
    if (n < 0 || (size_t)n >= cap)
        goto too_long;
    size_t used = (size_t)n;
    if (!colon)
        return 0;
    /* Settings after the colon: KEY=VALUE items separated by commas. */
    const char *item = colon + 1;
    for (;;) {
        size_t item_len = strcspn(item, ",");
        const char *eq = memchr(item, '=', item_len);
        if (item_len == 0 || !eq || eq == item || eq + 1 == item + item_len ||
            memchr(item, ':', item_len)) {
            snprintf(why, whylen, "setting '%.*s' is not KEY=VALUE", (int)(item_len > 64 ? 64 : item_len), item);
            return -1;
        }
        if ((size_t)(eq - item) == 7 && strncmp(item, "profile", 7) == 0) {
            snprintf(why, whylen, "the profile is named before ':', not set with profile=");
            return -1;
        }
        n = snprintf(out + used, cap - used, " %.*s", (int)item_len, item);
        if (n < 0 || (size_t)n >= cap - used)
            goto too_long;
        used += (size_t)n;
        if (item[item_len] == '\0')
            return 0;
        item += item_len + 1;
    }
too_long:
    snprintf(why, whylen, "longer than a command line may be (%d bytes)", GUEST_CMDLINE_MAX);
    return -1;
}

int vm_spec_decode(const char *spec, uint64_t memory_bytes, vm_boot_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    char why[320];
    size_t prefix = strlen(VM_SPEC_KERNEL_PREFIX);
    if (strncmp(spec, VM_SPEC_KERNEL_PREFIX, prefix) == 0) {
        const char *path = spec + prefix;
        size_t path_len = strcspn(path, " ");
        if (path_len == 0 || path[0] != '/' || path_len >= sizeof(out->kernel_path)) {
            snprintf(err, errlen, "spec '%.100s': the kernel path must be absolute", spec);
            return -1;
        }
        out->custom_kernel = true;
        memcpy(out->kernel_path, path, path_len);
        const char *cmdline = path[path_len] ? path + path_len + 1 : "";
        snprintf(out->cmdline, sizeof(out->cmdline), "%s", cmdline);
        if (check_cmdline(out->cmdline, memory_bytes, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "command line '%.100s': %s (the VMM checks every command line with the "
                     "workload kernel's parser)", out->cmdline, why);
            return -1;
        }
        return 0;
    }
    if (strlen(spec) >= FSM_PROFILE_MAX) {
        snprintf(err, errlen, "profile '%.40s...' is longer than %d characters", spec, FSM_PROFILE_MAX - 1);
        return -1;
    }
    const char *profile = spec[0] ? spec : "idle";
    if (profile_to_cmdline(profile, out->cmdline, sizeof(out->cmdline), why, sizeof(why)) != 0 ||
        check_cmdline(out->cmdline, memory_bytes, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "profile '%s': %s", profile, why);
        return -1;
    }
    return 0;
}

int vm_spec_encode_kernel(const char *path, const char *cmdline, char out[FSM_PROFILE_MAX], char *err,
                          size_t errlen)
{
    if (path[0] != '/') {
        snprintf(err, errlen, "kernel '%.100s': give an absolute path (the owner agent opens it)", path);
        return -1;
    }
    for (const char *p = path; *p; p++) {
        if (*p == ' ' || !isprint((unsigned char)*p)) {
            snprintf(err, errlen, "kernel '%.100s': the path may not hold spaces or control characters", path);
            return -1;
        }
    }
    for (const char *p = cmdline; *p; p++) {
        if (!isprint((unsigned char)*p)) {
            snprintf(err, errlen, "command line: control characters are not allowed");
            return -1;
        }
    }
    int n = snprintf(out, FSM_PROFILE_MAX, "%s%s%s%s", VM_SPEC_KERNEL_PREFIX, path, cmdline[0] ? " " : "", cmdline);
    if (n < 0 || n >= FSM_PROFILE_MAX) {
        snprintf(err, errlen, "kernel path and command line take %d characters; the cluster stores at most %d",
                 n, FSM_PROFILE_MAX - 1 - (int)strlen(VM_SPEC_KERNEL_PREFIX));
        return -1;
    }
    return 0;
}
