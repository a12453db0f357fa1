/* measure.c - see measure.h. */
#include "measure.h"
#include "proc.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WHOLE_POLL_S 0.02
#define FAILOVER_DEADLINE_S 30.0
#define REJOIN_DEADLINE_S 90.0
#define WARMUP_WRITES 20
#define MAX_WRITE_ERRORS 10

__attribute__((format(printf, 3, 4))) static void say(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

/* --- a whole cluster ------------------------------------------------------------ */

/* One look at every member; 1 when whole (and *leader set), 0 when not yet,
 * -1 when a member's process is gone. `not_yet` says why not. */
static int whole_now(cluster_t *c, int *leader, char *not_yet, size_t len)
{
    int n = cluster_size(c);
    member_status_t st[CLUSTER_MAX_MEMBERS];
    for (int i = 0; i < n; i++) {
        if (!cluster_running(c, i)) {
            snprintf(not_yet, len, "member %d exited; see %s", i + 1, cluster_log(c, i));
            return -1;
        }
        if (cluster_status(c, i, &st[i]) != 0) {
            snprintf(not_yet, len, "member %d does not answer", i + 1);
            return 0;
        }
    }
    int l = cluster_member_of(c, st[0].leader);
    if (l < 0) {
        snprintf(not_yet, len, "member 1 knows no leader");
        return 0;
    }
    for (int i = 1; i < n; i++)
        if (strcmp(st[i].leader, st[0].leader) != 0 || st[i].term != st[0].term || st[i].applied != st[0].applied) {
            snprintf(not_yet, len, "members 1 and %d differ (leader %s/%s, term %llu/%llu, applied %llu/%llu)",
                     i + 1, st[0].leader, st[i].leader, (unsigned long long)st[0].term,
                     (unsigned long long)st[i].term, (unsigned long long)st[0].applied,
                     (unsigned long long)st[i].applied);
            return 0;
        }
    if (st[l].voters >= 0 && st[l].voters != n) {
        snprintf(not_yet, len, "the leader counts %d voters of %d", st[l].voters, n);
        return 0;
    }
    *leader = l;
    return 1;
}

int measure_wait_whole(cluster_t *c, double timeout_s, int *leader, char *why, size_t whylen)
{
    double deadline = proc_now() + timeout_s;
    char not_yet[300] = "";
    for (;;) {
        int rc = whole_now(c, leader, not_yet, sizeof(not_yet));
        if (rc == 1)
            return 0;
        if (rc < 0 || proc_now() > deadline) {
            snprintf(why, whylen, "%s cluster not whole %s: %s", cluster_system(c),
                     rc < 0 ? "(a member died)" : "in time", not_yet);
            return -1;
        }
        proc_sleep(WHOLE_POLL_S);
    }
}

/* --- leader failover -------------------------------------------------------------- */

/* Polls the survivors every `poll_ms` until one names a leader other than
 * `old`; returns the milliseconds since `t0`, or -1 after the deadline. */
static double await_new_leader(cluster_t *c, int old, const char *old_name, double t0, double poll_ms, int *by)
{
    double next = t0;
    while (proc_now() - t0 < FAILOVER_DEADLINE_S) {
        for (int s = 0; s < cluster_size(c); s++) {
            member_status_t st;
            if (s == old || cluster_status(c, s, &st) != 0)
                continue;
            if (st.leader[0] && strcmp(st.leader, old_name) != 0) {
                *by = s;
                return (proc_now() - t0) * 1000.0;
            }
        }
        next += poll_ms / 1000.0;
        proc_sleep(next - proc_now());
    }
    return -1;
}

int measure_failover(cluster_t *c, int kills, double poll_ms, rng_t *rng, double *ms, int *done, char *why,
                     size_t whylen)
{
    *done = 0;
    int second_looks = 0;
    for (int k = 0; k < kills; k++) {
        int leader;
        if (measure_wait_whole(c, REJOIN_DEADLINE_S, &leader, why, whylen) != 0)
            return -1;
        proc_sleep(0.2 + 0.5 * rng_unit(rng));
        /* Whole a moment ago; take the leader's name from the leader itself. */
        member_status_t st;
        if (cluster_status(c, leader, &st) != 0 || cluster_member_of(c, st.leader) != leader) {
            if (++second_looks > kills) {
                say(why, whylen, "%s: the leader keeps changing between rounds", cluster_system(c));
                return -1;
            }
            k--;    /* it changed in the pause: look again */
            continue;
        }
        char old_name[64];
        snprintf(old_name, sizeof(old_name), "%s", st.leader);
        double t0 = proc_now();
        if (cluster_kill(c, leader) != 0) {
            say(why, whylen, "%s: cannot kill member %d", cluster_system(c), leader + 1);
            return -1;
        }
        int by = -1;
        double elapsed = await_new_leader(c, leader, old_name, t0, poll_ms, &by);
        if (elapsed < 0) {
            say(why, whylen, "%s: no survivor named a new leader within 30 s after killing member %d",
                cluster_system(c), leader + 1);
            return -1;
        }
        ms[(*done)++] = elapsed;
        fprintf(stderr, "bench raft: %s %d: kill %d/%d of member %d: member %d names a new leader after %.1f ms\n",
                cluster_system(c), cluster_size(c), k + 1, kills, leader + 1, by + 1, elapsed);
        if (cluster_start(c, leader) != 0) {
            say(why, whylen, "%s: cannot restart member %d", cluster_system(c), leader + 1);
            return -1;
        }
    }
    int leader;
    return measure_wait_whole(c, REJOIN_DEADLINE_S, &leader, why, whylen);
}

/* --- commits ------------------------------------------------------------------------ */

int measure_commit_latency(cluster_t *c, int member, int count, double *ms, int *done, char *why, size_t whylen)
{
    *done = 0;
    cluster_writer_t *w = cluster_writer_new(c, member);
    if (!w) {
        say(why, whylen, "%s: cannot open a writer to member %d", cluster_system(c), member + 1);
        return -1;
    }
    int errors = 0;
    char value[32], err[300] = "";
    for (int i = -WARMUP_WRITES; i < count && errors < MAX_WRITE_ERRORS; i++) {
        snprintf(value, sizeof(value), "%d", i);
        double t0 = proc_now();
        if (cluster_put(w, "bench.latency", value, err, sizeof(err)) != 0) {
            errors++;
            continue;
        }
        if (i >= 0)
            ms[(*done)++] = (proc_now() - t0) * 1000.0;
    }
    cluster_writer_destroy(&w);
    if (errors >= MAX_WRITE_ERRORS) {
        say(why, whylen, "%s: %d writes failed, the last: %s", cluster_system(c), errors, err);
        return -1;
    }
    return 0;
}

typedef struct {
    cluster_writer_t *writer;
    int number;
    double until;
    long commits, errors;
    double finished;
    char first_error[300];
} writer_thread_t;

static void *write_until(void *arg)
{
    writer_thread_t *t = arg;
    char key[32], value[32], err[300];
    snprintf(key, sizeof(key), "bench.client%d", t->number);
    for (long i = 0; proc_now() < t->until; i++) {
        snprintf(value, sizeof(value), "%ld", i);
        if (cluster_put(t->writer, key, value, err, sizeof(err)) == 0)
            t->commits++;
        else if (t->errors++ == 0)
            snprintf(t->first_error, sizeof(t->first_error), "%s", err);
    }
    t->finished = proc_now();
    return NULL;
}

int measure_throughput(cluster_t *c, int member, int clients, double seconds, throughput_t *out, char *why,
                       size_t whylen)
{
    memset(out, 0, sizeof(*out));
    writer_thread_t *threads = calloc((size_t)clients, sizeof(*threads));
    pthread_t *ids = calloc((size_t)clients, sizeof(*ids));
    int started = 0, rc = 0;
    if (!threads || !ids) {
        rc = -1;
        goto done;
    }
    for (int i = 0; i < clients; i++) {
        threads[i].number = i;
        if (!(threads[i].writer = cluster_writer_new(c, member))) {
            say(why, whylen, "%s: cannot open writer connections to member %d", cluster_system(c), member + 1);
            rc = -1;
            goto done;
        }
    }
    double start = proc_now();
    for (int i = 0; i < clients; i++) {
        threads[i].until = start + seconds;
        if (pthread_create(&ids[i], NULL, write_until, &threads[i]) != 0)
            break;
        started++;
    }
    double last = start;
    for (int i = 0; i < started; i++) {
        pthread_join(ids[i], NULL);
        out->commits += threads[i].commits;
        out->errors += threads[i].errors;
        if (!out->first_error[0] && threads[i].first_error[0])
            snprintf(out->first_error, sizeof(out->first_error), "%s", threads[i].first_error);
        if (threads[i].finished > last)
            last = threads[i].finished;
    }
    out->seconds = last - start;
    out->commits_per_s = out->seconds > 0 ? (double)out->commits / out->seconds : 0;
    if (started < clients) {
        say(why, whylen, "%s: started only %d writer threads", cluster_system(c), started);
        rc = -1;
    }
done:
    for (int i = 0; threads && i < clients; i++)
        cluster_writer_destroy(&threads[i].writer);
    free(threads);
    free(ids);
    return rc;
}

/* --- idle ---------------------------------------------------------------------------- */

/* The leader most of `names` (one per answering member) agree on, or NULL. */
static const char *most_named(char names[][64], int n)
{
    const char *best = NULL;
    int best_votes = 0;
    for (int i = 0; i < n; i++) {
        int votes = 0;
        for (int j = 0; j < n; j++)
            votes += strcmp(names[i], names[j]) == 0;
        if (names[i][0] && votes > best_votes) {
            best = names[i];
            best_votes = votes;
        }
    }
    return best;
}

int measure_idle(cluster_t *c, double seconds, double poll_s, idle_t *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    double start = proc_now(), next = start;
    char leader[64] = "";
    bool have_first = false;
    while (proc_now() - start < seconds) {
        char names[CLUSTER_MAX_MEMBERS][64];
        int answered = 0;
        uint64_t top = 0;
        for (int i = 0; i < cluster_size(c); i++) {
            member_status_t st;
            out->polls++;
            if (!cluster_running(c, i)) {
                say(why, whylen, "%s member %d exited while idle; see %s", cluster_system(c), i + 1,
                    cluster_log(c, i));
                return -1;
            }
            if (cluster_status(c, i, &st) != 0) {
                out->failed_polls++;
                continue;
            }
            snprintf(names[answered++], sizeof(names[0]), "%s", st.leader);
            top = st.term > top ? st.term : top;
        }
        if (answered) {
            if (!have_first)
                out->term_first = out->term_last = top;
            have_first = true;
            if (top > out->term_last && out->n_raised < IDLE_MAX_RAISES)
                out->raised_at[out->n_raised++] = proc_now() - start;
            out->term_last = top > out->term_last ? top : out->term_last;
        }
        const char *now_leader = most_named(names, answered);
        if (now_leader) {
            if (leader[0] && strcmp(leader, now_leader) != 0)
                out->leader_changes++;
            snprintf(leader, sizeof(leader), "%s", now_leader);
        }
        next += poll_s;
        proc_sleep(next - proc_now());
    }
    out->seconds = proc_now() - start;
    if (!have_first) {
        say(why, whylen, "%s: no member answered while idle", cluster_system(c));
        return -1;
    }
    return 0;
}

int measure_top_term(cluster_t *c, uint64_t *term)
{
    *term = 0;
    int answered = 0;
    for (int i = 0; i < cluster_size(c); i++) {
        member_status_t st;
        if (cluster_running(c, i) && cluster_status(c, i, &st) == 0) {
            answered++;
            *term = st.term > *term ? st.term : *term;
        }
    }
    return answered ? 0 : -1;
}

/* --- helpers ---------------------------------------------------------------------------- */

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double measure_percentile(double *v, int n, double p)
{
    if (n <= 0)
        return 0;
    qsort(v, (size_t)n, sizeof(*v), compare_doubles);
    int rank = (int)((p / 100.0) * n + 0.999999);   /* ceil, nearest rank */
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}
