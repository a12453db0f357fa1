/* swim.h - the SWIM + Lifeguard membership core: a pure state machine.
 *
 * A swim_t is one member's view of the cluster. It never touches a socket,
 * a clock or a random source: the caller passes the time (microseconds on
 * any monotonic scale) into every call, the PRNG is seeded from swim_new's
 * seed, and everything the core wants to send comes back as data.
 *
 *   swim_t *s = swim_new(&cfg, "host-a", "10.0.0.1:7402", &record, now, seed);
 *   swim_join(s, now, seeds, 2);
 *   loop:
 *     swim_receive(s, now, from, bytes, len);      // a UDP packet arrived
 *     swim_receive_pushpull(s, now, from, b, n);   // a push-pull payload arrived
 *     swim_tick(s, now);                           // every few milliseconds
 *     while (swim_next_output(s, &out)) send out.bytes to out.dest;
 *     while (swim_next_event(s, &ev)) react to joins, deaths...
 *
 * The protocol (docs/membership.md has the long form):
 * - Failure detection. Every probe interval the member pings the next member
 *   of a shuffled round-robin list. No ack within the probe timeout: it asks
 *   k others to ping the target for it (ping-req); they answer with the ack
 *   or a nack. No ack by the end of the interval: the target is suspect.
 * - Suspicion. A suspect has a timer; if it runs out the suspect is declared
 *   dead. The suspect refutes by gossiping "alive" with a higher incarnation.
 *   Lifeguard: the timer starts at `max` and shrinks toward `min` as other
 *   members independently confirm the suspicion:
 *       timeout = max(min, max - (max - min) * log(C + 1) / log(K + 1)).
 * - Local health (Lifeguard). A member that misses nacks it expected, or has
 *   to refute suspicions about itself, is probably the slow one; it scales
 *   its probe interval and timeout by (health score + 1).
 * - Dissemination. Membership updates are piggybacked on every packet and
 *   also gossiped to a few random members every gossip interval; each update
 *   is sent at most retransmit_mult * ceil(log10(n + 1)) times.
 * - Anti-entropy. Every push-pull interval the member swaps its full state
 *   with a random member over a stream (kind SWIM_OUT_PUSHPULL). Joining is
 *   a push-pull with the seeds, retried with backoff while no one answers.
 * - Leave. swim_leave gossips a "dead" message about oneself, which others
 *   record as "left" rather than "dead".
 * - Follow-up (ferry). A member that hears a suspicion probes the suspect
 *   itself at its next probe slot, with the accusation attached; a member
 *   accused at an old incarnation re-announces its current one. The refutation
 *   then rides back on the ack, so a member that missed the gossiped
 *   refutation does not let its own timer bury a live member.
 * - Catch-up (ferry). A packet from a member we do not know, or think
 *   dead, triggers a push-pull with it; and a member that has just joined
 *   swaps state once more with a random member a second later, to learn of
 *   those who joined at the same time. Whoever missed a join or a
 *   refutation in the gossip catches up at once, not at the next
 *   anti-entropy round.
 * - Healing. Every reconnect interval the member pings one member it thinks
 *   dead; if that member answers, the two swap state, and whoever was wrongly
 *   declared dead refutes. This is how the halves of a healed partition
 *   find each other again. */
#ifndef FERRY_SWIM_H
#define FERRY_SWIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/membership/swim_codec.h"
#include "agent/membership/swim_record.h"

typedef struct swim swim_t;

typedef struct {
    uint64_t probe_interval_us;     /* time between probes (health-scaled) */
    uint64_t probe_timeout_us;      /* wait for a direct ack before ping-req */
    uint32_t indirect_checks;       /* k: members asked to ping-req */
    uint32_t suspicion_mult;        /* min = mult * max(1, log10 n) * probe_interval */
    uint32_t suspicion_max_mult;    /* max = this * min */
    uint32_t retransmit_mult;       /* limit = mult * ceil(log10(n + 1)) ... */
    uint32_t retransmit_min;        /* ... but at least this many */
    uint64_t gossip_interval_us;    /* 0 disables gossip rounds (piggybacking stays) */
    uint32_t gossip_nodes;          /* members gossiped to per round */
    uint64_t gossip_to_dead_us;     /* keep gossiping to the dead this long */
    uint64_t pushpull_interval_us;  /* anti-entropy, scaled up past 32 members; 0 = off */
    uint64_t reconnect_interval_us; /* ping one dead member this often; 0 = off */
    uint64_t reap_after_us;         /* forget dead and left members after this */
    uint64_t join_retry_us;         /* first join retry; doubles each time ... */
    uint64_t join_retry_max_us;     /* ... up to this */
    uint32_t awareness_max;         /* Lifeguard health multiplier ceiling */
    bool follow_up_suspects;        /* probe a suspect soon after hearing of it, and
                                       re-announce ourselves to stale accusers */
    bool retry_direct;              /* re-ping the target beside the ping-reqs */
    bool catch_up;                  /* swap state with a sender we do not know or
                                       think dead, and with a random member one
                                       second after joining */
    size_t packet_max;              /* bytes per UDP packet, before sealing */
    uint32_t max_members;           /* members beyond this are ignored */
    uint32_t max_broadcasts;        /* pending updates beyond this are dropped */
} swim_config_t;

/* ferry's defaults: 200 ms probes, 100 ms probe timeout, 50 ms gossip. */
void swim_config_default(swim_config_t *cfg);
/* hashicorp/memberlist's DefaultLANConfig expressed in this core (1 s probes,
 * 500 ms timeout, suspicion mult 4, 200 ms gossip), for comparisons. */
void swim_config_memberlist_lan(swim_config_t *cfg);

/* Creates a member. `addr` is how others reach it ("host:port", or any
 * string the transport understands). Returns NULL if a name or address is
 * empty or too long, or the record does not encode. */
swim_t *swim_new(const swim_config_t *cfg, const char *name, const char *addr,
                 const swim_record_t *record, uint64_t now_us, uint64_t seed);
void swim_destroy(swim_t **self_p);

/* Asks the seeds (addresses) to swap state, now and then again with backoff
 * for as long as no other member is known alive. Returns 0 or -EINVAL. */
int swim_join(swim_t *self, uint64_t now_us, const char *const *seeds, size_t count);
/* Announces a graceful leave. Keep ticking until swim_leave_sent() so the
 * news gets out; after that the member may be destroyed. */
int swim_leave(swim_t *self, uint64_t now_us);
bool swim_leave_sent(const swim_t *self);
/* Replaces this member's record: bumps the incarnation and gossips it.
 * A record equal to the current one changes nothing. Returns 0, -EMSGSIZE
 * (the encoded record is over SWIM_RECORD_MAX) or -EINVAL. */
int swim_update_record(swim_t *self, uint64_t now_us, const swim_record_t *record);

/* Inputs. A malformed packet is dropped whole and counted; the return value
 * (-EBADMSG) is for logging, the core is unharmed either way. */
int swim_receive(swim_t *self, uint64_t now_us, const char *from_addr,
                 const uint8_t *bytes, size_t len);
int swim_receive_pushpull(swim_t *self, uint64_t now_us, const char *from_addr,
                          const uint8_t *bytes, size_t len);
void swim_tick(swim_t *self, uint64_t now_us);
/* The earliest time swim_tick has work to do (a hint for the shell's timer). */
uint64_t swim_next_deadline(const swim_t *self);

/* --- outputs ------------------------------------------------------------ */

typedef enum {
    SWIM_OUT_UDP,        /* one datagram, at most cfg.packet_max bytes */
    SWIM_OUT_PUSHPULL,   /* a state dump, to deliver over a stream */
} swim_out_kind_t;

typedef struct {
    swim_out_kind_t kind;
    char dest[SWIM_ADDR_CAP];
    const uint8_t *bytes;   /* valid until the next swim_next_output or destroy */
    size_t len;
} swim_output_t;

bool swim_ready(const swim_t *self);
/* Pops the oldest output; returns false when there is none. */
bool swim_next_output(swim_t *self, swim_output_t *out);

typedef enum {
    SWIM_EVENT_JOINED,      /* a member appeared, or came back from dead/left */
    SWIM_EVENT_SUSPECT,     /* a member became suspect */
    SWIM_EVENT_ALIVE,       /* a suspect refuted the suspicion */
    SWIM_EVENT_DEAD,        /* a member was declared dead */
    SWIM_EVENT_LEFT,        /* a member left gracefully */
    SWIM_EVENT_UPDATED,     /* a member's record or address changed */
} swim_event_type_t;

typedef struct {
    swim_event_type_t type;
    char name[SWIM_NAME_CAP];
    char addr[SWIM_ADDR_CAP];
    uint64_t incarnation;
    uint64_t at_us;
} swim_event_t;

const char *swim_event_name(swim_event_type_t type);
/* Pops the oldest event; returns false when there is none. The queue holds
 * SWIM_EVENT_QUEUE_MAX events; older ones are dropped (and counted) when an
 * owner does not drain it. */
#define SWIM_EVENT_QUEUE_MAX 8192
bool swim_next_event(swim_t *self, swim_event_t *ev);

/* --- members ------------------------------------------------------------ */

typedef struct {
    const char *name;
    const char *addr;
    swim_state_t state;
    uint64_t incarnation;     /* also the record's version */
    uint64_t state_since_us;  /* when the state last changed (local clock) */
    const uint8_t *record;    /* encoded; swim_record_decode() reads it */
    size_t record_len;
} swim_member_t;

/* Members are indexed 0..count-1; index 0 is this member. Pointers in a
 * swim_member_t stay valid until the next call that changes the core. */
size_t swim_member_count(const swim_t *self);
int swim_member_at(const swim_t *self, size_t index, swim_member_t *out);
int swim_member_find(const swim_t *self, const char *name, swim_member_t *out);
/* Membership updates still waiting to be gossiped. */
size_t swim_pending_updates(const swim_t *self);
/* Members in state alive or suspect, this one included. */
size_t swim_live_count(const swim_t *self);
const char *swim_name(const swim_t *self);
uint64_t swim_incarnation(const swim_t *self);
/* The Lifeguard local health score, 0 (healthy) .. awareness_max - 1. */
uint32_t swim_health(const swim_t *self);

typedef struct {
    uint64_t packets_in;
    uint64_t packets_bad;        /* failed to decode */
    uint64_t packets_out;
    uint64_t bytes_out;
    uint64_t pushpulls_in;
    uint64_t pushpulls_out;
    uint64_t probes;
    uint64_t probes_failed;
    uint64_t suspicions;         /* members this one suspected */
    uint64_t refutations;        /* suspicions about itself it refuted */
    uint64_t deaths_declared;    /* suspicion timers that ran out here */
    uint64_t address_conflicts;  /* alive messages with a clashing address */
    uint64_t members_rejected;   /* over max_members */
    uint64_t broadcasts_dropped; /* over max_broadcasts */
    uint64_t events_dropped;
    uint64_t outputs_dropped;
} swim_stats_t;

swim_stats_t swim_stats(const swim_t *self);

/* Lifeguard's suspicion timeout for k expected and c received confirmations. */
uint64_t swim_suspicion_timeout(uint64_t min_us, uint64_t max_us, uint32_t k, uint32_t c);

#endif
