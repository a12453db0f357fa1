/* bench_stream.c - throughput of the encrypted migration stream.
 *
 * Measured in one run, on this machine:
 *   - the single-core AEAD ceiling: the stream's own seal function in place
 *     on a 4 MiB buffer, for AES-256-GCM (OpenSSL libcrypto) and
 *     XChaCha20-Poly1305 (libsodium), and for reference libsodium 1.0.18's
 *     AES-256-GCM, which the stream used before;
 *   - plaintext ZeroMQ over loopback TCP: 4 MiB zero-copy messages, DEALER to
 *     ROUTER, the same socket pattern as the stream;
 *   - the encrypted stream over loopback: a 256 MiB image of random pages
 *     sent in 8 passes (2 GiB in all) with 1 and 2 parallel streams, 2 and
 *     4 MiB chunks, from the first page to the receiver's confirmation of
 *     DONE; the copy is compared with the source before any row is printed.
 *     K=1 also runs with each end pinned to a core of its own (sender and
 *     its ZeroMQ I/O thread on CPU 0, receiver and its on CPU 1), as if on
 *     two hosts with one core each; and reports the process's page faults
 *     per GiB (FERRY_BENCH_MALLOC=default: without stream_tune_malloc()).
 * Sender and receiver share the machine's cores (loopback), and on a shared
 * machine other work takes some of them: wall-clock rows depend on that load
 * (reported in "machine"). The CPU rows do not: the AEAD ceilings are bytes
 * per CPU-second of the sealing thread, and each stream run also reports
 * guest bytes per CPU-second of its sending thread, of its receiving thread,
 * and of the whole process (both ends, ZeroMQ's I/O threads, kernel time).
 * The ideal for the whole process is half the AEAD ceiling: every byte is
 * sealed once and opened once.
 *
 * Prints one JSON object on stdout; progress on stderr. Asserts nothing. */
#include <pthread.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>
#include <zmq.h>

#include "common/log.h"
#include "common/rng.h"
#include "migration/stream.h"
#include "migration/stream_crypto.h"


#define MIB (1024.0 * 1024.0)
#define IMAGE_PAGES (256 * 256)          /* 256 MiB */
#define STREAM_PASSES 8                  /* 2 GiB through the stream */
#define BUFFER_BYTES (4 << 20)

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double thread_cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double process_cpu_s(void)
{
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec * 1e-6
         + (double)usage.ru_stime.tv_sec + (double)usage.ru_stime.tv_usec * 1e-6;
}

static long minor_faults(void)
{
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_minflt;
}

static double load_average(void)
{
    double load = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &load) != 1)
            load = -1;
        fclose(f);
    }
    return load;
}

/* --- JSON rows ----------------------------------------------------------------- */

static int rows_printed;

static void row_begin(const char *name)
{
    printf("%s\n  {\"case\": \"%s\"", rows_printed++ ? "," : "", name);
}

static void row_rated(const char *name, const char *unit, const char *better, double value,
                      double anchor, const char *anchor_name, double goal, const char *note)
{
    row_begin(name);
    printf(", \"unit\": \"%s\", \"better\": \"%s\", \"ferry\": %.3f", unit, better, value);
    if (anchor > 0)
        printf(", \"anchor\": %.3f, \"anchor_name\": \"%s\"", anchor, anchor_name);
    if (goal > 0)
        printf(", \"goal\": %.3f", goal);
    if (note)
        printf(", \"note\": \"%s\"", note);
    printf("}");
}

static void row(const char *name, const char *unit, double value, double anchor,
                const char *anchor_name, double goal, const char *note)
{
    row_rated(name, unit, "higher", value, anchor, anchor_name, goal, note);
}

static void row_skipped(const char *name, const char *reason)
{
    row_begin(name);
    printf(", \"skipped\": \"%s\"}", reason);
}

/* --- AEAD ceilings -------------------------------------------------------------- */

/* GB per CPU-second of sealing a 4 MiB buffer in place, for about
 * `seconds` of this thread's CPU time. */
static double aead_ceiling(stream_cipher_t cipher, double seconds)
{
    uint8_t *buffer = aligned_alloc(64, BUFFER_BYTES);
    memset(buffer, 0x5a, BUFFER_BYTES);
    uint8_t raw[32], tag[16], ad[16] = { 0 };
    randombytes_buf(raw, sizeof raw);
    stream_key_t key;
    stream_key_init(&key, cipher, raw);
    uint64_t bytes = 0, seq = 0;
    double start = thread_cpu_s(), elapsed;
    do {
        for (int i = 0; i < 8; i++, seq++) {
            stream_seal(&key, seq, ad, sizeof ad, buffer, BUFFER_BYTES, tag);
            bytes += BUFFER_BYTES;
        }
        elapsed = thread_cpu_s() - start;
    } while (elapsed < seconds);
    stream_key_wipe(&key);
    free(buffer);
    return (double)bytes / elapsed / 1e9;
}

/* libsodium's own AES-256-GCM on the same buffers: what the stream used
 * before it moved to libcrypto. */
static double libsodium_aes_gcm(double seconds)
{
    uint8_t *buffer = aligned_alloc(64, BUFFER_BYTES);
    memset(buffer, 0x5a, BUFFER_BYTES);
    uint8_t raw[32], tag[16], ad[16] = { 0 }, nonce[crypto_aead_aes256gcm_NPUBBYTES] = { 0 };
    randombytes_buf(raw, sizeof raw);
    crypto_aead_aes256gcm_state *state = aligned_alloc(64, (sizeof *state + 63) & ~(size_t)63);
    crypto_aead_aes256gcm_beforenm(state, raw);
    uint64_t bytes = 0;
    double start = thread_cpu_s(), elapsed;
    do {
        for (int i = 0; i < 8; i++) {
            nonce[0]++;
            crypto_aead_aes256gcm_encrypt_detached_afternm(buffer, tag, NULL, buffer,
                                                           BUFFER_BYTES, ad, sizeof ad, NULL,
                                                           nonce, state);
            bytes += BUFFER_BYTES;
        }
        elapsed = thread_cpu_s() - start;
    } while (elapsed < seconds);
    sodium_memzero(state, sizeof *state);
    free(state);
    free(buffer);
    return (double)bytes / elapsed / 1e9;
}

/* --- plaintext ZeroMQ ------------------------------------------------------------- */

typedef struct {
    void *router;
    int messages;
    double gbps;
} plain_receiver_t;

static void *plain_receive(void *arg)
{
    plain_receiver_t *r = arg;
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    uint64_t bytes = 0;
    double start = 0;
    for (int i = 0; i < r->messages; i++) {
        zmq_msg_recv(&msg, r->router, 0);   /* routing id */
        zmq_msg_recv(&msg, r->router, 0);
        if (i == 0)
            start = now_s();                /* time from the first arrival */
        else
            bytes += zmq_msg_size(&msg);
    }
    r->gbps = (double)bytes / (now_s() - start) / 1e9;
    zmq_msg_close(&msg);
    return NULL;
}

static void no_free(void *data, void *hint)
{
}

static double plaintext_zeromq(void)
{
    void *rx_ctx = zmq_ctx_new(), *tx_ctx = zmq_ctx_new();
    plain_receiver_t r = { .router = zmq_socket(rx_ctx, ZMQ_ROUTER), .messages = 512 };
    zmq_bind(r.router, "tcp://127.0.0.1:*");
    char endpoint[256];
    size_t size = sizeof endpoint;
    zmq_getsockopt(r.router, ZMQ_LAST_ENDPOINT, endpoint, &size);
    void *dealer = zmq_socket(tx_ctx, ZMQ_DEALER);
    int hwm = 6, linger = 0;
    zmq_setsockopt(dealer, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(dealer, ZMQ_LINGER, &linger, sizeof linger);
    zmq_connect(dealer, endpoint);
    uint8_t *buffer = malloc(BUFFER_BYTES);
    memset(buffer, 0x33, BUFFER_BYTES);
    pthread_t thread;
    pthread_create(&thread, NULL, plain_receive, &r);
    for (int i = 0; i < r.messages; i++) {
        zmq_msg_t msg;
        zmq_msg_init_data(&msg, buffer, BUFFER_BYTES, no_free, NULL);
        zmq_msg_send(&msg, dealer, 0);
    }
    pthread_join(thread, NULL);
    zmq_close(dealer);
    zmq_close(r.router);
    zmq_ctx_term(tx_ctx);
    zmq_ctx_term(rx_ctx);
    free(buffer);
    return r.gbps;
}

/* --- the encrypted stream ----------------------------------------------------------- */

/* Keeps the calling thread, and the threads it creates from now on (ZeroMQ
 * starts a context's I/O thread with its first socket), on one CPU; -1
 * lets them run anywhere again. Pinning each end of the stream to a core
 * of its own stands in for two hosts: each end then has one core for
 * itself, its ZeroMQ I/O thread and its share of the kernel's TCP work. */
static void pin_to_cpu(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    for (long c = 0; c < cpus && c < CPU_SETSIZE; c++)
        if (cpu < 0 || c == cpu)
            CPU_SET(c, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

typedef struct {
    stream_receiver_t *receiver;
    int cpu;                 /* pin the receiving thread there, or -1 */
    int rc;
    double cpu_s;
} stream_run_t;

static void *stream_receive(void *arg)
{
    stream_run_t *run = arg;
    if (run->cpu >= 0)
        pin_to_cpu(run->cpu);
    double cpu = thread_cpu_s();
    run->rc = stream_receiver_accept(run->receiver, 10000);
    stream_event_t event;
    while (run->rc == 0) {
        run->rc = stream_receiver_next(run->receiver, 10000, &event);
        if (run->rc == 0 && event.type == STREAM_EVENT_RECORD
            && event.record_type == STREAM_RECORD_DONE)
            break;
    }
    run->cpu_s = thread_cpu_s() - cpu;
    return NULL;
}

typedef struct {
    double gbps;             /* guest bytes per wall second */
    double sender_gbpcs;     /* guest bytes per sender-thread CPU second */
    double receiver_gbpcs;
    double process_gbpcs;    /* guest bytes per CPU-second of the whole process */
    double faults_per_gib;   /* page faults of the process per GiB of guest bytes */
    char cipher[32];
    int rc;
} stream_result_t;

/* pinned: the receiver end on CPU 1, the sender end on CPU 0 (see
 * pin_to_cpu); otherwise both ends run anywhere. */
static stream_result_t stream_throughput(uint8_t *source, uint8_t *destination, uint32_t streams,
                                         uint32_t chunk_bytes, stream_cipher_t cipher, bool pinned)
{
    stream_result_t result = { 0 };
    stream_identity_t sender_id, receiver_id;
    crypto_box_keypair(sender_id.public_key, sender_id.secret_key);
    crypto_box_keypair(receiver_id.public_key, receiver_id.secret_key);

    stream_receiver_config_t rcfg;
    stream_receiver_config_defaults(&rcfg);
    rcfg.bind_endpoint = "tcp://127.0.0.1:*";
    rcfg.identity = receiver_id;
    memcpy(rcfg.peer_public_key, sender_id.public_key, 32);
    rcfg.memory = destination;
    rcfg.memory_scratch = true;   /* as a live migration's receiver */
    rcfg.memory_bytes = (size_t)IMAGE_PAGES * STREAM_PAGE_SIZE;
    if (pinned)
        pin_to_cpu(1);
    stream_run_t run = { .receiver = stream_receiver_new(&rcfg), .cpu = pinned ? 1 : -1 };
    if (pinned)
        pin_to_cpu(0);

    stream_sender_config_t scfg;
    stream_sender_config_defaults(&scfg);
    scfg.endpoint = stream_receiver_endpoint(run.receiver);
    scfg.identity = sender_id;
    memcpy(scfg.peer_public_key, receiver_id.public_key, 32);
    scfg.streams = streams;
    scfg.chunk_bytes = chunk_bytes;
    scfg.cipher = cipher;
    stream_sender_t *sender = stream_sender_new(&scfg);

    pthread_t thread;
    pthread_create(&thread, NULL, stream_receive, &run);
    result.rc = stream_sender_handshake(sender, 10000);
    uint64_t *indices = malloc(IMAGE_PAGES * sizeof *indices);
    for (uint64_t p = 0; p < IMAGE_PAGES; p++)
        indices[p] = p;

    long faults = minor_faults();
    double start = now_s(), cpu = thread_cpu_s(), process_cpu = process_cpu_s();
    for (uint32_t pass = 1; pass <= STREAM_PASSES && result.rc == 0; pass++) {
        result.rc = stream_send_pages(sender, source, indices, IMAGE_PAGES);
        if (result.rc == 0)
            result.rc = stream_send_record(sender, STREAM_RECORD_END_OF_PASS, &pass, sizeof pass);
    }
    if (result.rc == 0)
        result.rc = stream_sender_finish(sender, 10000);
    double elapsed = now_s() - start, sender_cpu = thread_cpu_s() - cpu;
    pthread_join(thread, NULL);
    double all_cpu = process_cpu_s() - process_cpu;
    faults = minor_faults() - faults;
    if (result.rc == 0)
        result.rc = run.rc;
    if (result.rc == 0 && memcmp(source, destination, rcfg.memory_bytes) != 0)
        result.rc = STREAM_ERR_PROTOCOL;   /* never report a wrong copy's speed */

    double bytes = (double)stream_sender_stats(sender).page_bytes;
    result.gbps = bytes / elapsed / 1e9;
    result.sender_gbpcs = bytes / sender_cpu / 1e9;
    result.receiver_gbpcs = bytes / run.cpu_s / 1e9;
    result.process_gbpcs = bytes / all_cpu / 1e9;
    result.faults_per_gib = (double)faults / (bytes / (1024.0 * 1024 * 1024));
    snprintf(result.cipher, sizeof result.cipher, "%s", stream_sender_cipher(sender));
    if (result.rc)
        fprintf(stderr, "bench stream: failed: %s%s\n", stream_sender_error(sender),
                stream_receiver_error(run.receiver));
    free(indices);
    stream_sender_destroy(&sender);
    stream_receiver_destroy(&run.receiver);
    pin_to_cpu(-1);
    return result;
}

static void fill_random_pages(uint8_t *memory, size_t pages, unsigned zero_every)
{
    rng_t rng;
    rng_seed(&rng, 2024);
    for (size_t p = 0; p < pages; p++) {
        uint64_t *words = (uint64_t *)(memory + p * STREAM_PAGE_SIZE);
        bool zero = zero_every && p % zero_every == 0;
        for (size_t w = 0; w < STREAM_PAGE_SIZE / 8; w++)
            words[w] = zero ? 0 : rng_next(&rng);
    }
}

static void cpu_model(char *out, size_t len)
{
    snprintf(out, len, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *colon = strchr(line, ':');
            if (colon) {
                snprintf(out, len, "%s", colon + 2);
                out[strcspn(out, "\n\"\\")] = 0;
            }
            break;
        }
    }
    fclose(f);
}

static void stream_rows(const char *label, stream_result_t r, double ceiling,
                        const char *ceiling_name, bool with_goal)
{
    bool pinned = strstr(label, "one core per end") != NULL;
    char name[160], ideal_name[200];
    if (r.rc) {
        row_skipped(label, stream_error_name(r.rc));
        return;
    }
    row(label, "GB/s", r.gbps, ceiling, ceiling_name, with_goal ? 0.8 * ceiling : 0,
        pinned ? "guest bytes per wall second; sender and its ZeroMQ I/O thread on CPU 0, "
                 "receiver and its I/O thread on CPU 1, as if on two hosts"
               : "guest bytes per wall second; both ends share this machine's cores");
    snprintf(name, sizeof name, "%s, whole process", label);
    snprintf(ideal_name, sizeof ideal_name, "half of %s: one seal and one open per byte",
             ceiling_name);
    row(name, "GB per CPU-second", r.process_gbpcs, ceiling / 2, ideal_name, 0,
        "both ends, ZeroMQ I/O threads and kernel time included");
    snprintf(name, sizeof name, "%s, sender thread", label);
    row(name, "GB per CPU-second", r.sender_gbpcs, ceiling, ceiling_name, 0,
        "gather, zero check, seal");
    snprintf(name, sizeof name, "%s, receiver thread", label);
    row(name, "GB per CPU-second", r.receiver_gbpcs, ceiling, ceiling_name, 0,
        "open, scatter into guest memory");
}

int main(void)
{
    log_set_level(LOG_LEVEL_WARN);
    /* As ferryd does; FERRY_BENCH_MALLOC=default leaves glibc's defaults,
     * to see what the tuning saves (the page-fault row). */
    const char *malloc_env = getenv("FERRY_BENCH_MALLOC");
    bool tuned = !malloc_env || strcmp(malloc_env, "default") != 0;
    if (tuned)
        stream_tune_malloc();
    if (!stream_crypto_init()) {
        printf("{\"bench\": \"stream\", \"rows\": [{\"case\": \"all\", \"skipped\": \"libsodium failed\"}]}\n");
        return 0;
    }
    char model[256];
    cpu_model(model, sizeof model);
    double load_before = load_average();
    bool have_aes = stream_cipher_available(STREAM_CIPHER_AES256GCM);

    size_t image_bytes = (size_t)IMAGE_PAGES * STREAM_PAGE_SIZE;
    uint8_t *source = aligned_alloc(STREAM_PAGE_SIZE, image_bytes);
    uint8_t *destination = aligned_alloc(STREAM_PAGE_SIZE, image_bytes);
    fill_random_pages(source, IMAGE_PAGES, 0);
    memset(destination, 1, image_bytes);   /* fault it in: measure the stream, not mmap */

    stream_result_t k1 = { .rc = STREAM_ERR_INVALID }, k2 = k1, k1_4m = k1, k1_x, k1_half;
    stream_result_t k1_pinned = k1;
    bool two_cpus = sysconf(_SC_NPROCESSORS_ONLN) >= 2;
    if (have_aes && two_cpus) {
        fprintf(stderr, "bench stream: stream K=1, one core per end\n");
        k1_pinned = stream_throughput(source, destination, 1, 2 << 20, STREAM_CIPHER_AES256GCM,
                                      true);
    }
    if (have_aes) {
        fprintf(stderr, "bench stream: stream K=1\n");
        k1 = stream_throughput(source, destination, 1, 2 << 20, STREAM_CIPHER_AES256GCM, false);
        fprintf(stderr, "bench stream: stream K=2\n");
        k2 = stream_throughput(source, destination, 2, 2 << 20, STREAM_CIPHER_AES256GCM, false);
        fprintf(stderr, "bench stream: stream K=1, 4 MiB chunks\n");
        k1_4m = stream_throughput(source, destination, 1, 4 << 20, STREAM_CIPHER_AES256GCM, false);
    }
    fprintf(stderr, "bench stream: stream K=1 xchacha\n");
    k1_x = stream_throughput(source, destination, 1, 2 << 20, STREAM_CIPHER_XCHACHA20POLY1305, false);
    fprintf(stderr, "bench stream: stream K=1, half the pages zero\n");
    fill_random_pages(source, IMAGE_PAGES, 2);
    k1_half = stream_throughput(source, destination, 1, 2 << 20, STREAM_CIPHER_AUTO, false);
    /* The anchors after the stream runs: their 4 MiB buffers, freed, would
     * raise glibc's mmap threshold and hide what untuned malloc costs. */
    fprintf(stderr, "bench stream: AEAD ceilings\n");
    double aes = have_aes ? aead_ceiling(STREAM_CIPHER_AES256GCM, 1.5) : 0;
    double aes_sodium = have_aes ? libsodium_aes_gcm(1.5) : 0;
    double xchacha = aead_ceiling(STREAM_CIPHER_XCHACHA20POLY1305, 1.5);
    fprintf(stderr, "bench stream: plaintext ZeroMQ\n");
    double plain = plaintext_zeromq();

    printf("{\"bench\": \"stream\", \"machine\": {\"cpus\": %ld, \"model\": \"%s\", "
           "\"load_1m_before\": %.2f, \"load_1m_after\": %.2f},\n",
           sysconf(_SC_NPROCESSORS_ONLN), model, load_before, load_average());
    printf(" \"rows\": [");
    const char *aes_name = "AES-256-GCM ceiling (libcrypto), same run";
    if (have_aes) {
        row("aead aes256gcm libcrypto, in memory, 1 core", "GB per CPU-second", aes, 0, NULL, 0,
            "the stream's own seal function on 4 MiB buffers (OpenSSL EVP)");
        row("aead aes256gcm libsodium, in memory, 1 core", "GB per CPU-second", aes_sodium, 0,
            NULL, 0, "for reference: libsodium 1.0.18, which the stream used before");
    } else {
        row_skipped("aead aes256gcm libcrypto, in memory, 1 core", "no AES-NI: AES-GCM not offered");
        row_skipped("aead aes256gcm libsodium, in memory, 1 core", "no AES-NI: libsodium offers no AES-GCM");
    }
    row("aead xchacha20poly1305 libsodium, in memory, 1 core", "GB per CPU-second", xchacha, 0,
        NULL, 0, NULL);
    row("plaintext zeromq loopback, 4 MiB messages", "GB/s", plain, 0, NULL, 0,
        "DEALER to ROUTER, zero-copy send, one I/O thread each side");
    if (have_aes) {
        stream_rows("stream K=1 aes256gcm 2 MiB chunks", k1, aes, aes_name, true);
        if (two_cpus)
            stream_rows("stream K=1 aes256gcm 2 MiB chunks, one core per end", k1_pinned, aes,
                        aes_name, true);
        else
            row_skipped("stream K=1 aes256gcm 2 MiB chunks, one core per end",
                        "needs 2 CPUs: one for each end");
        stream_rows("stream K=2 aes256gcm 2 MiB chunks", k2, aes, aes_name, true);
        stream_rows("stream K=1 aes256gcm 4 MiB chunks", k1_4m, aes, aes_name, true);
        if (k1.rc == 0) {
            row("stream K=1 aes256gcm vs plaintext zeromq", "GB/s", k1.gbps, plain,
                "plaintext ZeroMQ loopback, same run", 0, NULL);
            row_rated("stream K=1 aes256gcm page faults", "faults per GiB", "lower",
                      k1.faults_per_gib, 0, NULL, 0,
                      tuned ? "stream_tune_malloc() as in ferryd (FERRY_BENCH_MALLOC=default "
                              "for glibc's defaults); 262144 would be one per 4 KiB page"
                            : "glibc's malloc defaults (FERRY_BENCH_MALLOC=default)");
        }
    } else {
        row_skipped("stream K=1 aes256gcm 2 MiB chunks", "no AES-NI");
    }
    stream_rows("stream K=1 xchacha20poly1305 2 MiB chunks", k1_x, xchacha,
                "libsodium XChaCha20-Poly1305 ceiling, same run", false);
    if (k1_half.rc == 0)
        row("stream K=1 half zero pages (elided)", "GB/s", k1_half.gbps, k1.rc ? 0 : k1.gbps,
            "same stream, no zero pages, same run", 0, "guest bytes per second");
    else
        row_skipped("stream K=1 half zero pages (elided)", stream_error_name(k1_half.rc));
    printf("\n]}\n");
    free(source);
    free(destination);
    return 0;
}
