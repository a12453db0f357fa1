/* test_stream.c - the encrypted migration stream on real ZeroMQ loopback
 * sockets: round trips, a man in the middle that tampers with, replays,
 * reorders, truncates or scrambles chunks, and handshakes with wrong keys. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <sodium.h>
#include <zmq.h>

#include "common/log.h"
#include "common/rng.h"
#include "migration/stream.h"
#include "migration/stream_crypto.h"
#include "migration/stream_wire.h"
#include "mitm_proxy.h"

#define PAGES 2048   /* 8 MiB images */
#define LONG_MS 10000

/* --- fixtures ------------------------------------------------------------------- */

typedef struct {
    stream_identity_t sender, receiver, stranger;
    uint8_t migration_id[STREAM_MIGRATION_ID_BYTES];
    uint8_t *source;        /* PAGES pages */
    uint8_t *destination;
    bool scratch;           /* receivers treat destination as scratch memory */
} fixture_t;

/* Keys as the agent has them: CURVE keypairs in z85, decoded to raw. */
static void curve_identity(stream_identity_t *identity)
{
    char public_z85[41], secret_z85[41];
    assert_int_equal(zmq_curve_keypair(public_z85, secret_z85), 0);
    assert_non_null(zmq_z85_decode(identity->public_key, public_z85));
    assert_non_null(zmq_z85_decode(identity->secret_key, secret_z85));
}

/* Pseudo-random pages, about one in four all zero. */
static void fill_image(uint8_t *memory, size_t pages, uint64_t seed)
{
    rng_t rng;
    rng_seed(&rng, seed);
    for (size_t p = 0; p < pages; p++) {
        uint64_t *words = (uint64_t *)(memory + p * STREAM_PAGE_SIZE);
        bool zero = rng_below(&rng, 4) == 0;
        for (size_t w = 0; w < STREAM_PAGE_SIZE / 8; w++)
            words[w] = zero ? 0 : rng_next(&rng);
    }
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    curve_identity(&f->sender);
    curve_identity(&f->receiver);
    curve_identity(&f->stranger);
    randombytes_buf(f->migration_id, sizeof f->migration_id);
    f->source = aligned_alloc(STREAM_PAGE_SIZE, PAGES * STREAM_PAGE_SIZE);
    f->destination = aligned_alloc(STREAM_PAGE_SIZE, PAGES * STREAM_PAGE_SIZE);
    fill_image(f->source, PAGES, 1);
    /* The destination starts out as garbage: zero pages must be written. */
    memset(f->destination, 0xee, PAGES * STREAM_PAGE_SIZE);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    free(f->source);
    free(f->destination);
    free(f);
    return 0;
}

static stream_receiver_config_t receiver_config(fixture_t *f)
{
    stream_receiver_config_t cfg;
    stream_receiver_config_defaults(&cfg);
    cfg.bind_endpoint = "tcp://127.0.0.1:*";
    cfg.identity = f->receiver;
    memcpy(cfg.peer_public_key, f->sender.public_key, STREAM_KEY_BYTES);
    memcpy(cfg.migration_id, f->migration_id, STREAM_MIGRATION_ID_BYTES);
    cfg.memory = f->destination;
    cfg.memory_bytes = PAGES * STREAM_PAGE_SIZE;
    cfg.memory_scratch = f->scratch;
    return cfg;
}

static stream_sender_config_t sender_config(fixture_t *f, const char *endpoint)
{
    stream_sender_config_t cfg;
    stream_sender_config_defaults(&cfg);
    cfg.endpoint = endpoint;
    cfg.identity = f->sender;
    memcpy(cfg.peer_public_key, f->receiver.public_key, STREAM_KEY_BYTES);
    memcpy(cfg.migration_id, f->migration_id, STREAM_MIGRATION_ID_BYTES);
    cfg.chunk_bytes = 256 * 1024;
    cfg.timeout_ms = LONG_MS;
    return cfg;
}

/* --- the receiver, on a thread of its own ------------------------------------------ */

#define MAX_RECORDS 16

typedef struct {
    stream_receiver_t *receiver;
    pthread_t thread;
    int accept_rc;
    int final_rc;                    /* of the last call: 0 once DONE came */
    int records;
    uint8_t record_types[MAX_RECORDS];
    uint8_t record_data[MAX_RECORDS][64];
    size_t record_lens[MAX_RECORDS];
    uint64_t pages, zero_pages;
    atomic_uint_fast64_t dropped;    /* read by the test thread meanwhile */
} receiver_run_t;

static void *receiver_main(void *arg)
{
    receiver_run_t *run = arg;
    run->accept_rc = stream_receiver_accept(run->receiver, LONG_MS);
    if (run->accept_rc)
        return NULL;
    int64_t idle_polls = 0;
    for (;;) {
        stream_event_t event;
        int rc = stream_receiver_next(run->receiver, 100, &event);
        atomic_store(&run->dropped, stream_receiver_stats(run->receiver).dropped);
        if (rc == STREAM_ERR_TIMEOUT && ++idle_polls < LONG_MS / 100)
            continue;
        if (rc) {
            run->final_rc = rc;
            return NULL;
        }
        idle_polls = 0;
        if (event.type == STREAM_EVENT_PAGES) {
            run->pages += event.pages;
            run->zero_pages += event.zero_pages;
            continue;
        }
        if (run->records < MAX_RECORDS) {
            int i = run->records++;
            run->record_types[i] = event.record_type;
            run->record_lens[i] = event.len;
            memcpy(run->record_data[i], event.data, event.len < 64 ? event.len : 64);
        }
        if (event.record_type == STREAM_RECORD_DONE) {
            run->final_rc = 0;
            return NULL;
        }
    }
}

static receiver_run_t *receiver_start(stream_receiver_t *receiver)
{
    receiver_run_t *run = calloc(1, sizeof *run);
    run->receiver = receiver;
    run->final_rc = 1;
    pthread_create(&run->thread, NULL, receiver_main, run);
    return run;
}

static void receiver_join(receiver_run_t *run)
{
    pthread_join(run->thread, NULL);
}

/* --- helpers ------------------------------------------------------------------------ */

/* The sender's handshake blocks; tests that play the other end run it here. */
typedef struct {
    stream_sender_t *sender;
    int rc;
    pthread_t thread;
} handshake_call_t;

static void *handshake_main(void *arg)
{
    handshake_call_t *call = arg;
    call->rc = stream_sender_handshake(call->sender, LONG_MS);
    return NULL;
}

static void handshake_start(handshake_call_t *call, stream_sender_t *sender)
{
    call->sender = sender;
    call->rc = 1;
    pthread_create(&call->thread, NULL, handshake_main, call);
}

static uint64_t *all_pages(void)
{
    uint64_t *indices = malloc(PAGES * sizeof *indices);
    for (uint64_t p = 0; p < PAGES; p++)
        indices[p] = p;
    return indices;
}

/* Sends the image in two passes and a few records; returns the first error. */
static int send_migration(stream_sender_t *sender, fixture_t *f, int finish_timeout_ms)
{
    uint64_t *indices = all_pages();
    int rc = stream_send_pages(sender, f->source, indices, PAGES);
    uint32_t pass = 1;
    if (!rc)
        rc = stream_send_record(sender, STREAM_RECORD_END_OF_PASS, &pass, sizeof pass);
    /* Pass 2: the guest rewrote every 7th page (some now zero, some not). */
    size_t dirty = 0;
    for (uint64_t p = 0; p < PAGES; p += 7) {
        uint8_t *page = f->source + p * STREAM_PAGE_SIZE;
        if (p % 2)
            memset(page, 0, STREAM_PAGE_SIZE);
        else
            memset(page, (int)(p & 0xff) | 1, STREAM_PAGE_SIZE);
        indices[dirty++] = p;
    }
    if (!rc)
        rc = stream_send_pages(sender, f->source, indices, dirty);
    pass = 2;
    if (!rc)
        rc = stream_send_record(sender, STREAM_RECORD_END_OF_PASS, &pass, sizeof pass);
    if (!rc)
        rc = stream_send_record(sender, STREAM_RECORD_VCPU_STATE, "rip=0x100000 rsp=0x8000", 23);
    free(indices);
    if (!rc)
        rc = stream_sender_finish(sender, finish_timeout_ms);
    return rc;
}

/* --- round trips ----------------------------------------------------------------------- */

/* The receiver's limits, 0 for its defaults. */
typedef struct {
    uint32_t max_streams, max_chunk_bytes, max_window;
} limits_t;

static void round_trip_limited(fixture_t *f, uint32_t streams, stream_cipher_t cipher,
                               limits_t limits, uint32_t expected_streams)
{
    stream_receiver_config_t rcfg = receiver_config(f);
    if (limits.max_streams)
        rcfg.max_streams = limits.max_streams;
    if (limits.max_chunk_bytes)
        rcfg.max_chunk_bytes = limits.max_chunk_bytes;
    if (limits.max_window)
        rcfg.max_window = limits.max_window;
    stream_receiver_t *receiver = stream_receiver_new(&rcfg);
    assert_non_null(receiver);
    receiver_run_t *run = receiver_start(receiver);

    stream_sender_config_t scfg = sender_config(f, stream_receiver_endpoint(receiver));
    scfg.streams = streams;
    scfg.cipher = cipher;
    stream_sender_t *sender = stream_sender_new(&scfg);
    assert_non_null(sender);
    assert_string_equal(stream_sender_cipher(sender), "none");
    assert_int_equal(stream_sender_handshake(sender, LONG_MS), 0);
    assert_int_equal(stream_sender_streams(sender), expected_streams);
    assert_int_equal(send_migration(sender, f, LONG_MS), 0);
    receiver_join(run);

    assert_int_equal(run->accept_rc, 0);
    assert_int_equal(run->final_rc, 0);
    assert_memory_equal(f->source, f->destination, PAGES * STREAM_PAGE_SIZE);

    /* Records in order, payloads intact, each after its pages. */
    assert_int_equal(run->records, 4);
    assert_int_equal(run->record_types[0], STREAM_RECORD_END_OF_PASS);
    assert_int_equal(run->record_lens[0], 4);
    assert_int_equal(stream_get_u32(run->record_data[0]), 1);
    assert_int_equal(stream_get_u32(run->record_data[1]), 2);
    assert_int_equal(run->record_types[2], STREAM_RECORD_VCPU_STATE);
    assert_memory_equal(run->record_data[2], "rip=0x100000 rsp=0x8000", 23);
    assert_int_equal(run->record_types[3], STREAM_RECORD_DONE);

    stream_stats_t sent = stream_sender_stats(sender);
    stream_stats_t got = stream_receiver_stats(receiver);
    uint64_t pass2 = (PAGES + 6) / 7;
    assert_int_equal(sent.pages, PAGES + pass2);
    assert_int_equal(got.pages, sent.pages);
    assert_int_equal(got.zero_pages, sent.zero_pages);
    assert_int_equal(run->pages, got.pages);
    assert_true(sent.zero_pages > PAGES / 8);   /* zero pages were elided */
    assert_int_equal(got.chunks, sent.chunks);
    assert_int_equal(got.records, 4);
    assert_int_equal(sent.page_bytes, sent.pages * STREAM_PAGE_SIZE);
    /* Elided zero pages make the wire smaller than the memory. */
    assert_true(sent.wire_bytes < sent.page_bytes);

    stream_cipher_t expected = cipher != STREAM_CIPHER_AUTO ? cipher
                               : crypto_aead_aes256gcm_is_available()
                                     ? STREAM_CIPHER_AES256GCM : STREAM_CIPHER_XCHACHA20POLY1305;
    assert_string_equal(stream_sender_cipher(sender), stream_cipher_name(expected));
    assert_string_equal(stream_receiver_cipher(receiver), stream_cipher_name(expected));
    assert_string_equal(stream_receiver_peer_address(receiver), "127.0.0.1");

    /* Finished is finished. */
    stream_event_t event;
    assert_int_equal(stream_receiver_next(receiver, 0, &event), STREAM_ERR_CLOSED);
    assert_int_equal(stream_send_record(sender, STREAM_RECORD_USER, "x", 1), STREAM_ERR_CLOSED);

    stream_sender_destroy(&sender);
    assert_null(sender);
    stream_receiver_destroy(&receiver);
    assert_null(receiver);
    free(run);
}

static void round_trip(fixture_t *f, uint32_t streams, stream_cipher_t cipher)
{
    round_trip_limited(f, streams, cipher, (limits_t){ 0 }, streams);
}

static void test_round_trip_one_stream(void **state)
{
    round_trip(*state, 1, STREAM_CIPHER_AUTO);
}

static void test_round_trip_three_streams_xchacha(void **state)
{
    round_trip(*state, 3, STREAM_CIPHER_XCHACHA20POLY1305);
}

static void test_round_trip_two_streams_aes(void **state)
{
    if (!crypto_aead_aes256gcm_is_available())
        skip();
    round_trip(*state, 2, STREAM_CIPHER_AES256GCM);
}

/* Scratch memory: AES-GCM chunks are opened as they are read, pages straight
 * into memory. Same bytes, same records, same order. */
static void test_round_trip_scratch_memory(void **state)
{
    fixture_t *f = *state;
    f->scratch = true;
    round_trip(f, 1, STREAM_CIPHER_AUTO);
    round_trip(f, 3, STREAM_CIPHER_AUTO);
    round_trip(f, 2, STREAM_CIPHER_XCHACHA20POLY1305);   /* cannot scatter: opened on arrival */
}

/* The receiver lowers what the sender asks for; the sender follows. */
static void test_receiver_limits_are_negotiated(void **state)
{
    limits_t limits = { .max_streams = 2, .max_chunk_bytes = 128 * 1024, .max_window = 2 };
    round_trip_limited(*state, 4, STREAM_CIPHER_AUTO, limits, 2);
}

/* --- a man in the middle ------------------------------------------------------------ */

static void through_proxy(fixture_t *f, proxy_mode_t mode, int target, int expected_rc,
                          const char *expected_text)
{
    stream_receiver_config_t rcfg = receiver_config(f);
    stream_receiver_t *receiver = stream_receiver_new(&rcfg);
    assert_non_null(receiver);
    proxy_t *proxy = proxy_start(stream_receiver_endpoint(receiver), mode, target);
    receiver_run_t *run = receiver_start(receiver);

    stream_sender_config_t scfg = sender_config(f, proxy->endpoint);
    scfg.chunk_bytes = STREAM_MIN_CHUNK_BYTES;
    scfg.timeout_ms = 500;   /* the receiver stops acknowledging: fail soon */
    stream_sender_t *sender = stream_sender_new(&scfg);
    assert_non_null(sender);
    assert_int_equal(stream_sender_handshake(sender, LONG_MS), 0);
    int rc = send_migration(sender, f, 500);
    receiver_join(run);

    assert_int_equal(run->accept_rc, 0);
    assert_int_equal(run->final_rc, expected_rc);
    assert_int_equal(stream_receiver_next(receiver, 0, &(stream_event_t){ 0 }), expected_rc);
    assert_non_null(strstr(stream_receiver_error(receiver), expected_text));
    /* The sender cannot finish: nothing after the bad chunk is consumed. */
    assert_int_equal(rc, STREAM_ERR_TIMEOUT);
    assert_true(strlen(stream_sender_error(sender)) > 0);

    stream_sender_destroy(&sender);
    proxy_stop(&proxy);
    stream_receiver_destroy(&receiver);
    free(run);
}

static void test_tampered_chunk_aborts(void **state)
{
    through_proxy(*state, PROXY_TAMPER, 4, STREAM_ERR_TAMPERED, "chunk seq 3 failed authentication");
}

/* Opened as it is read, a tampered chunk is caught at its end. */
static void test_tampered_chunk_aborts_scratch_memory(void **state)
{
    fixture_t *f = *state;
    f->scratch = true;
    through_proxy(f, PROXY_TAMPER, 4, STREAM_ERR_TAMPERED, "chunk seq 3 failed authentication");
}

/* A record is handed out only once its chunk verified, even from scratch
 * memory: the first chunk carries a record alone and is tampered with. */
static void test_tampered_record_is_never_handed_out(void **state)
{
    fixture_t *f = *state;
    f->scratch = true;
    stream_receiver_config_t rcfg = receiver_config(f);
    stream_receiver_t *receiver = stream_receiver_new(&rcfg);
    proxy_t *proxy = proxy_start(stream_receiver_endpoint(receiver), PROXY_TAMPER, 2);
    receiver_run_t *run = receiver_start(receiver);
    stream_sender_config_t scfg = sender_config(f, proxy->endpoint);
    scfg.timeout_ms = 500;
    stream_sender_t *sender = stream_sender_new(&scfg);
    assert_int_equal(stream_sender_handshake(sender, LONG_MS), 0);
    char state_text[512];
    memset(state_text, 'v', sizeof state_text);   /* the flipped byte lands in the payload */
    assert_int_equal(stream_send_record(sender, STREAM_RECORD_VCPU_STATE, state_text,
                                        sizeof state_text), 0);
    assert_int_equal(stream_sender_finish(sender, 500), STREAM_ERR_TIMEOUT);
    receiver_join(run);
    assert_int_equal(run->final_rc, STREAM_ERR_TAMPERED);
    assert_int_equal(run->records, 0);
    assert_non_null(strstr(stream_receiver_error(receiver), "chunk seq 1 failed authentication"));
    stream_sender_destroy(&sender);
    proxy_stop(&proxy);
    stream_receiver_destroy(&receiver);
    free(run);
}

static void test_replayed_chunk_aborts(void **state)
{
    through_proxy(*state, PROXY_REPLAY, 3, STREAM_ERR_SEQUENCE, "chunk seq 2 where 4 was expected");
}

static void test_reordered_chunk_aborts(void **state)
{
    through_proxy(*state, PROXY_SWAP, 3, STREAM_ERR_SEQUENCE, "chunk seq 3 where 2 was expected");
}

static void test_truncated_chunk_aborts(void **state)
{
    through_proxy(*state, PROXY_TRUNCATE, 5, STREAM_ERR_PROTOCOL, "does not match its header");
}

static void test_random_chunk_aborts(void **state)
{
    through_proxy(*state, PROXY_SCRAMBLE, 2, STREAM_ERR_PROTOCOL, "stream 0: malformed chunk");
}

static void test_proxy_that_only_forwards_is_harmless(void **state)
{
    fixture_t *f = *state;
    stream_receiver_config_t rcfg = receiver_config(f);
    stream_receiver_t *receiver = stream_receiver_new(&rcfg);
    proxy_t *proxy = proxy_start(stream_receiver_endpoint(receiver), PROXY_FORWARD, -1);
    receiver_run_t *run = receiver_start(receiver);
    stream_sender_config_t scfg = sender_config(f, proxy->endpoint);
    stream_sender_t *sender = stream_sender_new(&scfg);
    assert_int_equal(stream_sender_handshake(sender, LONG_MS), 0);
    assert_int_equal(send_migration(sender, f, LONG_MS), 0);
    receiver_join(run);
    assert_int_equal(run->final_rc, 0);
    assert_memory_equal(f->source, f->destination, PAGES * STREAM_PAGE_SIZE);
    stream_sender_destroy(&sender);
    proxy_stop(&proxy);
    stream_receiver_destroy(&receiver);
    free(run);
}

/* --- handshake failures ---------------------------------------------------------------- */

/* The sender is set up with `identity` and believes the receiver's key is
 * `believed_receiver`; expects both ends to fail as given. */
static void failed_handshake(fixture_t *f, const stream_identity_t *identity,
                             const uint8_t *believed_receiver, const uint8_t *migration_id,
                             const char *receiver_text, const char *sender_text)
{
    stream_receiver_config_t rcfg = receiver_config(f);
    stream_receiver_t *receiver = stream_receiver_new(&rcfg);
    receiver_run_t *run = receiver_start(receiver);
    stream_sender_config_t scfg = sender_config(f, stream_receiver_endpoint(receiver));
    scfg.identity = *identity;
    memcpy(scfg.peer_public_key, believed_receiver, STREAM_KEY_BYTES);
    memcpy(scfg.migration_id, migration_id, STREAM_MIGRATION_ID_BYTES);
    stream_sender_t *sender = stream_sender_new(&scfg);
    assert_non_null(sender);
    assert_int_equal(stream_sender_handshake(sender, LONG_MS), STREAM_ERR_REJECTED);
    assert_non_null(strstr(stream_sender_error(sender), sender_text));
    /* Failed for good. */
    assert_int_equal(stream_send_pages(sender, f->source, (uint64_t[]){ 0 }, 1), STREAM_ERR_REJECTED);
    receiver_join(run);
    assert_int_equal(run->accept_rc, STREAM_ERR_AUTH);
    assert_non_null(strstr(stream_receiver_error(receiver), receiver_text));
    stream_sender_destroy(&sender);
    stream_receiver_destroy(&receiver);
    free(run);
}

static void test_unknown_sender_identity_fails(void **state)
{
    fixture_t *f = *state;
    failed_handshake(f, &f->stranger, f->receiver.public_key, f->migration_id,
                     "but the expected sender is", "unexpected sender identity key");
}

static void test_sender_expecting_another_receiver_fails(void **state)
{
    fixture_t *f = *state;
    failed_handshake(f, &f->sender, f->stranger.public_key, f->migration_id,
                     "failed authentication", "failed authentication");
}

static void test_wrong_migration_id_fails(void **state)
{
    fixture_t *f = *state;
    uint8_t other[STREAM_MIGRATION_ID_BYTES] = { 1, 2, 3 };
    failed_handshake(f, &f->sender, f->receiver.public_key, other, "another migration",
                     "unknown migration id");
}

/* An impostor that answers for the receiver without its secret key: it can
 * claim the receiver's identity but cannot produce the WELCOME MAC. */
static void test_impostor_receiver_fails(void **state)
{
    fixture_t *f = *state;
    void *ctx = zmq_ctx_new();
    void *impostor = zmq_socket(ctx, ZMQ_ROUTER);
    int linger = 0;
    zmq_setsockopt(impostor, ZMQ_LINGER, &linger, sizeof linger);
    assert_int_equal(zmq_bind(impostor, "tcp://127.0.0.1:*"), 0);
    char endpoint[256];
    size_t size = sizeof endpoint;
    zmq_getsockopt(impostor, ZMQ_LAST_ENDPOINT, endpoint, &size);

    stream_sender_config_t scfg = sender_config(f, endpoint);
    stream_sender_t *sender = stream_sender_new(&scfg);
    handshake_call_t call;
    handshake_start(&call, sender);

    zmq_msg_t routing_id, hello_msg;
    zmq_msg_init(&routing_id);
    zmq_msg_init(&hello_msg);
    assert_true(zmq_msg_recv(&routing_id, impostor, 0) >= 0);
    assert_true(zmq_msg_recv(&hello_msg, impostor, 0) >= 0);
    stream_hello_t hello;
    const char *why = NULL;
    assert_int_equal(stream_hello_decode(zmq_msg_data(&hello_msg), zmq_msg_size(&hello_msg),
                                         &hello, &why), 0);
    stream_welcome_t welcome = { .streams = 1, .chunk_bytes = hello.chunk_bytes,
                                 .window = hello.window, .cipher = STREAM_CIPHER_XCHACHA20POLY1305 };
    memcpy(welcome.identity, f->receiver.public_key, STREAM_KEY_BYTES);   /* the claim */
    uint8_t secret[32], static_key[32];
    crypto_kx_keypair(welcome.ephemeral, secret);
    /* Best it can do: a MAC under a key it shares with the sender. */
    stream_static_key(static_key, &f->stranger, f->sender.public_key);
    uint8_t bytes[STREAM_WELCOME_SIZE];
    stream_welcome_encode(&welcome, bytes);
    stream_mac(bytes + STREAM_WELCOME_MAC_AT, static_key, STREAM_LABEL_WELCOME,
               zmq_msg_data(&hello_msg), STREAM_HELLO_SIZE, bytes, STREAM_WELCOME_MAC_AT);
    zmq_send(impostor, zmq_msg_data(&routing_id), zmq_msg_size(&routing_id), ZMQ_SNDMORE);
    zmq_send(impostor, bytes, sizeof bytes, 0);
    pthread_join(call.thread, NULL);

    assert_int_equal(call.rc, STREAM_ERR_AUTH);
    assert_non_null(strstr(stream_sender_error(sender), "man in the middle"));
    assert_string_equal(stream_sender_cipher(sender), "none");

    zmq_msg_close(&routing_id);
    zmq_msg_close(&hello_msg);
    stream_sender_destroy(&sender);
    zmq_close(impostor);
    zmq_ctx_term(ctx);
}

/* --- robustness ---------------------------------------------------------------------- */

/* After the session is up, junk from another connection is ignored and
 * counted; the migration completes. */
static void test_stray_connection_is_ignored(void **state)
{
    fixture_t *f = *state;
    stream_receiver_config_t rcfg = receiver_config(f);
    stream_receiver_t *receiver = stream_receiver_new(&rcfg);
    receiver_run_t *run = receiver_start(receiver);
    stream_sender_config_t scfg = sender_config(f, stream_receiver_endpoint(receiver));
    stream_sender_t *sender = stream_sender_new(&scfg);
    assert_int_equal(stream_sender_handshake(sender, LONG_MS), 0);

    void *ctx = zmq_ctx_new();
    void *stray = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(stray, ZMQ_LINGER, &linger, sizeof linger);
    zmq_connect(stray, stream_receiver_endpoint(receiver));
    zmq_send(stray, "junk junk junk junk junk junk junk", 34, 0);
    /* Wait (bounded) until the receiver has seen it. */
    int64_t waited = 0;
    while (atomic_load(&run->dropped) == 0 && waited < LONG_MS) {
        zmq_poll(NULL, 0, 10);
        waited += 10;
    }
    assert_int_equal(atomic_load(&run->dropped), 1);

    assert_int_equal(send_migration(sender, f, LONG_MS), 0);
    receiver_join(run);
    assert_int_equal(run->final_rc, 0);
    assert_memory_equal(f->source, f->destination, PAGES * STREAM_PAGE_SIZE);
    zmq_close(stray);
    zmq_ctx_term(ctx);
    stream_sender_destroy(&sender);
    stream_receiver_destroy(&receiver);
    free(run);
}

/* A receiver that stops consuming stops the sender at its window. */
static void test_window_bounds_the_sender(void **state)
{
    fixture_t *f = *state;
    stream_receiver_config_t rcfg = receiver_config(f);
    stream_receiver_t *receiver = stream_receiver_new(&rcfg);
    stream_sender_config_t scfg = sender_config(f, stream_receiver_endpoint(receiver));
    scfg.chunk_bytes = STREAM_MIN_CHUNK_BYTES;   /* 15 pages per chunk */
    scfg.window = 2;
    scfg.timeout_ms = 300;
    stream_sender_t *sender = stream_sender_new(&scfg);
    handshake_call_t call;
    handshake_start(&call, sender);
    assert_int_equal(stream_receiver_accept(receiver, LONG_MS), 0);
    pthread_join(call.thread, NULL);
    assert_int_equal(call.rc, 0);

    /* Nobody calls stream_receiver_next(): after two chunks, the third
     * waits for an acknowledgement that never comes. */
    uint64_t *indices = all_pages();
    int rc = stream_send_pages(sender, f->source, indices, 200);
    assert_int_equal(rc, STREAM_ERR_TIMEOUT);
    assert_non_null(strstr(stream_sender_error(sender), "consumed nothing"));
    assert_int_equal(stream_sender_stats(sender).chunks, 2);
    free(indices);
    stream_sender_destroy(&sender);
    stream_receiver_destroy(&receiver);
}

/* --- replies, abort, late memory ------------------------------------------------------ */

/* A receiver that answers: it learns the memory size from the first record,
 * replies to it, takes the pages, and replies again after DONE. */
typedef struct {
    stream_receiver_t *receiver;
    fixture_t *f;
    bool abort_after_first_record;
    pthread_t thread;
    int rc;
} answering_t;

static void *answering_main(void *arg)
{
    answering_t *a = arg;
    stream_event_t event;
    a->rc = stream_receiver_accept(a->receiver, LONG_MS);
    if (!a->rc)
        a->rc = stream_receiver_next(a->receiver, LONG_MS, &event);
    if (a->rc)
        return NULL;
    /* No cmocka asserts off the main thread: a wrong turn shows up in rc. */
    if (event.type != STREAM_EVENT_RECORD || event.record_type != STREAM_RECORD_USER) {
        a->rc = -100;
        return NULL;
    }
    if (a->abort_after_first_record) {
        a->rc = stream_receiver_abort(a->receiver, "no room for a VM of that size");
        return NULL;
    }
    uint64_t pages = stream_get_u64(event.data);
    if ((a->rc = stream_receiver_set_memory(a->receiver, a->f->destination,
                                            pages * STREAM_PAGE_SIZE, a->f->scratch))
        || (a->rc = stream_receiver_reply(a->receiver, 7, "room for it", 11)))
        return NULL;
    while ((a->rc = stream_receiver_next(a->receiver, LONG_MS, &event)) == 0) {
        if (event.type == STREAM_EVENT_RECORD && event.record_type == STREAM_RECORD_DONE)
            break;
    }
    if (!a->rc)
        a->rc = stream_receiver_reply(a->receiver, 8, NULL, 0);   /* after DONE too */
    return NULL;
}

static void test_receiver_replies_and_learns_memory_late(void **state)
{
    fixture_t *f = *state;
    f->scratch = true;   /* as a live migration's receiver learns its VM's memory */
    stream_receiver_config_t rcfg = receiver_config(f);
    rcfg.memory = NULL;
    rcfg.memory_bytes = 0;
    stream_receiver_t *receiver = stream_receiver_new(&rcfg);
    assert_non_null(receiver);
    answering_t a = { .receiver = receiver, .f = f };
    pthread_create(&a.thread, NULL, answering_main, &a);

    stream_sender_config_t scfg = sender_config(f, stream_receiver_endpoint(receiver));
    scfg.streams = 2;
    stream_sender_t *sender = stream_sender_new(&scfg);
    stream_reply_t reply;
    assert_int_equal(stream_sender_next_reply(sender, 0, &reply), STREAM_ERR_INVALID);
    assert_int_equal(stream_sender_handshake(sender, LONG_MS), 0);
    assert_int_equal(stream_sender_next_reply(sender, 0, &reply), STREAM_ERR_TIMEOUT);
    uint8_t size[8];
    stream_put_u64(size, PAGES);
    assert_int_equal(stream_send_record(sender, STREAM_RECORD_USER, size, sizeof size), 0);
    assert_int_equal(stream_sender_next_reply(sender, LONG_MS, &reply), 0);
    assert_int_equal(reply.type, 7);
    assert_int_equal(reply.len, 11);
    assert_memory_equal(reply.data, "room for it", 11);
    /* Not final: the sender goes on. */
    assert_int_equal(stream_sender_next_reply(sender, 0, &reply), STREAM_ERR_TIMEOUT);
    uint64_t *indices = all_pages();
    assert_int_equal(stream_send_pages(sender, f->source, indices, PAGES), 0);
    free(indices);
    assert_int_equal(stream_sender_finish(sender, LONG_MS), 0);
    assert_int_equal(stream_sender_next_reply(sender, LONG_MS, &reply), 0);
    assert_int_equal(reply.type, 8);
    assert_int_equal(reply.len, 0);
    pthread_join(a.thread, NULL);
    assert_int_equal(a.rc, 0);
    assert_memory_equal(f->source, f->destination, PAGES * STREAM_PAGE_SIZE);

    /* Bad replies are refused without ending anything. */
    assert_int_equal(stream_receiver_reply(receiver, STREAM_REPLY_ABORT, NULL, 0),
                     STREAM_ERR_INVALID);
    static uint8_t big[STREAM_REPLY_MAX_BYTES + 1];
    assert_int_equal(stream_receiver_reply(receiver, 9, big, sizeof big), STREAM_ERR_INVALID);
    assert_int_equal(stream_receiver_set_memory(receiver, f->destination, 100, false),
                     STREAM_ERR_INVALID);
    stream_sender_destroy(&sender);
    stream_receiver_destroy(&receiver);
}

/* Pages beyond the memory the receiver has (none, here) end the stream. */
static void test_pages_without_memory_are_refused(void **state)
{
    fixture_t *f = *state;
    stream_receiver_config_t rcfg = receiver_config(f);
    rcfg.memory = NULL;
    rcfg.memory_bytes = 0;
    stream_receiver_t *receiver = stream_receiver_new(&rcfg);
    receiver_run_t *run = receiver_start(receiver);
    stream_sender_config_t scfg = sender_config(f, stream_receiver_endpoint(receiver));
    stream_sender_t *sender = stream_sender_new(&scfg);
    assert_int_equal(stream_sender_handshake(sender, LONG_MS), 0);
    assert_int_equal(stream_send_pages(sender, f->source, (uint64_t[]){ 0 }, 1), 0);
    assert_int_equal(stream_flush(sender), 0);
    receiver_join(run);
    assert_int_equal(run->final_rc, STREAM_ERR_PROTOCOL);
    assert_non_null(strstr(stream_receiver_error(receiver), "beyond destination memory"));
    free(run);
    stream_sender_destroy(&sender);
    stream_receiver_destroy(&receiver);
}

/* A receiver that gives up says why, and the sender stops at once rather
 * than after its timeout. */
static void test_receiver_abort_reaches_the_sender(void **state)
{
    fixture_t *f = *state;
    stream_receiver_config_t rcfg = receiver_config(f);
    stream_receiver_t *receiver = stream_receiver_new(&rcfg);
    answering_t a = { .receiver = receiver, .f = f, .abort_after_first_record = true };
    pthread_create(&a.thread, NULL, answering_main, &a);
    stream_sender_config_t scfg = sender_config(f, stream_receiver_endpoint(receiver));
    scfg.timeout_ms = 60000;   /* a timeout would fail the test's own deadline */
    stream_sender_t *sender = stream_sender_new(&scfg);
    assert_int_equal(stream_sender_handshake(sender, LONG_MS), 0);
    assert_int_equal(stream_send_record(sender, STREAM_RECORD_USER, "big VM", 6), 0);
    pthread_join(a.thread, NULL);
    assert_int_equal(a.rc, 0);
    stream_reply_t reply;
    assert_int_equal(stream_sender_next_reply(sender, LONG_MS, &reply), STREAM_ERR_REJECTED);
    assert_non_null(strstr(stream_sender_error(sender), "no room for a VM of that size"));
    /* Final on both ends. */
    uint64_t *indices = all_pages();
    assert_int_equal(stream_send_pages(sender, f->source, indices, PAGES), STREAM_ERR_REJECTED);
    free(indices);
    stream_event_t event;
    assert_int_equal(stream_receiver_next(receiver, 0, &event), STREAM_ERR_CLOSED);
    assert_non_null(strstr(stream_receiver_error(receiver), "gave up"));
    stream_sender_destroy(&sender);
    stream_receiver_destroy(&receiver);
}

static void test_invalid_configs_are_refused(void **state)
{
    fixture_t *f = *state;
    stream_sender_config_t scfg = sender_config(f, "tcp://127.0.0.1:1");
    scfg.streams = 0;
    assert_null(stream_sender_new(&scfg));
    scfg = sender_config(f, "ipc:///tmp/x");
    assert_null(stream_sender_new(&scfg));
    scfg = sender_config(f, "tcp://127.0.0.1:1");
    scfg.identity.secret_key[5] ^= 1;   /* no longer matches its public key */
    assert_null(stream_sender_new(&scfg));
    scfg = sender_config(f, "tcp://127.0.0.1:1");
    scfg.chunk_bytes = 1000;
    assert_null(stream_sender_new(&scfg));

    stream_receiver_config_t rcfg = receiver_config(f);
    rcfg.memory_bytes = 100;
    assert_null(stream_receiver_new(&rcfg));
    rcfg = receiver_config(f);
    rcfg.bind_endpoint = "tcp://256.0.0.1:1";
    assert_null(stream_receiver_new(&rcfg));

    /* Calls out of order. */
    rcfg = receiver_config(f);
    stream_receiver_t *receiver = stream_receiver_new(&rcfg);
    stream_event_t event;
    assert_int_equal(stream_receiver_next(receiver, 0, &event), STREAM_ERR_INVALID);
    assert_int_equal(stream_receiver_accept(receiver, 0), STREAM_ERR_TIMEOUT);
    scfg = sender_config(f, stream_receiver_endpoint(receiver));
    stream_sender_t *sender = stream_sender_new(&scfg);
    assert_int_equal(stream_send_pages(sender, f->source, (uint64_t[]){ 0 }, 1), STREAM_ERR_INVALID);

    /* Arguments the session refuses without failing. */
    receiver_run_t *run = receiver_start(receiver);
    assert_int_equal(stream_sender_handshake(sender, LONG_MS), 0);
    static uint8_t big[256 * 1024];
    assert_int_equal(stream_send_record(sender, STREAM_RECORD_USER, big, scfg.chunk_bytes - 15),
                     STREAM_ERR_INVALID);
    assert_int_equal(stream_send_record(sender, STREAM_RECORD_DONE, NULL, 0), STREAM_ERR_INVALID);
    assert_int_equal(stream_send_record(sender, 0, NULL, 0), STREAM_ERR_INVALID);
    assert_int_equal(stream_send_pages(sender, f->source, (uint64_t[]){ 1ULL << 60 }, 1),
                     STREAM_ERR_INVALID);
    /* The largest record goes through. */
    assert_int_equal(stream_send_record(sender, STREAM_RECORD_USER, big, scfg.chunk_bytes - 16), 0);
    assert_int_equal(stream_sender_finish(sender, LONG_MS), 0);
    receiver_join(run);
    assert_int_equal(run->final_rc, 0);
    assert_int_equal(run->records, 2);
    assert_int_equal(run->record_lens[0], scfg.chunk_bytes - 16);
    free(run);
    stream_sender_destroy(&sender);
    stream_receiver_destroy(&receiver);
}

/* The sender may encrypt pages straight from the caller's memory, but only
 * during the call: pages still waiting in a partly filled chunk when
 * stream_send_pages() returns must already be the sender's own copy. The
 * pages go out from a scratch buffer in small batches (so each call leaves a
 * partly filled chunk behind), and the buffer is scribbled over after each
 * call; the destination must still get the original pages. */
static void check_memory_not_read_after_the_call(fixture_t *f, uint32_t streams,
                                                 stream_cipher_t cipher)
{
    stream_receiver_config_t rcfg = receiver_config(f);
    stream_receiver_t *receiver = stream_receiver_new(&rcfg);
    assert_non_null(receiver);
    receiver_run_t *run = receiver_start(receiver);
    stream_sender_config_t scfg = sender_config(f, stream_receiver_endpoint(receiver));
    scfg.streams = streams;
    scfg.cipher = cipher;
    stream_sender_t *sender = stream_sender_new(&scfg);
    assert_non_null(sender);
    assert_int_equal(stream_sender_handshake(sender, LONG_MS), 0);

    uint8_t *scratch = aligned_alloc(STREAM_PAGE_SIZE, PAGES * STREAM_PAGE_SIZE);
    uint64_t *indices = all_pages();
    const size_t batch = 45;   /* not a divisor of a chunk's page count */
    for (size_t first = 0; first < PAGES; first += batch) {
        size_t count = PAGES - first < batch ? PAGES - first : batch;
        memcpy(scratch, f->source, PAGES * STREAM_PAGE_SIZE);
        assert_int_equal(stream_send_pages(sender, scratch, indices + first, count), 0);
        memset(scratch, 0xab, PAGES * STREAM_PAGE_SIZE);
    }
    assert_int_equal(stream_sender_finish(sender, LONG_MS), 0);
    receiver_join(run);
    assert_int_equal(run->final_rc, 0);
    assert_memory_equal(f->source, f->destination, PAGES * STREAM_PAGE_SIZE);
    free(indices);
    free(scratch);
    stream_sender_destroy(&sender);
    stream_receiver_destroy(&receiver);
    free(run);
}

static void test_memory_not_read_after_the_call(void **state)
{
    fixture_t *f = *state;
    check_memory_not_read_after_the_call(f, 2, STREAM_CIPHER_AUTO);
    memset(f->destination, 0xee, PAGES * STREAM_PAGE_SIZE);
    check_memory_not_read_after_the_call(f, 1, STREAM_CIPHER_XCHACHA20POLY1305);
}

int main(void)
{
    log_set_level(LOG_LEVEL_OFF);   /* failures are the point of half these tests */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_one_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip_three_streams_xchacha, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip_two_streams_aes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receiver_limits_are_negotiated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proxy_that_only_forwards_is_harmless, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip_scratch_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampered_chunk_aborts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampered_chunk_aborts_scratch_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampered_record_is_never_handed_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replayed_chunk_aborts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reordered_chunk_aborts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_chunk_aborts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_chunk_aborts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_sender_identity_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sender_expecting_another_receiver_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_migration_id_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_impostor_receiver_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stray_connection_is_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_bounds_the_sender, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_configs_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receiver_replies_and_learns_memory_late, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pages_without_memory_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receiver_abort_reaches_the_sender, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_not_read_after_the_call, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
