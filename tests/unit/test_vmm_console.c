/* test_vmm_console.c - the console ring: cursors, wrap-around, the log file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmm/console.h"

static void test_cursors_and_wrap(void **state)
{
    (void)state;
    char err[128];
    console_t *c = console_new(NULL, err, sizeof err);
    assert_non_null(c);
    char buf[64];
    uint64_t a = 0, b = 0;
    assert_int_equal(console_read(c, &a, buf, sizeof buf), 0);
    console_write(c, "hello ", 6);
    console_write(c, "world", 5);
    assert_int_equal(console_read(c, &a, buf, 6), 6);
    assert_memory_equal(buf, "hello ", 6);
    assert_int_equal(console_read(c, &a, buf, sizeof buf), 5);
    assert_memory_equal(buf, "world", 5);
    /* A second reader has its own cursor. */
    assert_int_equal(console_read(c, &b, buf, sizeof buf), 11);
    assert_int_equal(a, 11);

    /* Overrun the ring: a stale cursor skips to the oldest byte held. */
    char block[1000];
    for (int i = 0; i < 100; i++) {
        memset(block, 'a' + i % 26, sizeof block);
        console_write(c, block, sizeof block);
    }
    uint64_t total = console_total(c);
    assert_int_equal(total, 11 + 100 * 1000);
    uint64_t stale = 3;
    assert_int_equal(console_read(c, &stale, buf, 1), 1);
    assert_int_equal(stale, total - CONSOLE_RING_BYTES + 1);
    /* A cursor from the future is pulled back to the end. */
    uint64_t future = total + 50;
    assert_int_equal(console_read(c, &future, buf, sizeof buf), 0);
    assert_int_equal(future, total);
    console_destroy(&c);
    assert_null(c);
}

static void test_log_file_gets_lines(void **state)
{
    (void)state;
    char path[64], err[128];
    snprintf(path, sizeof path, "/tmp/ferry-console-test-%d.log", (int)getpid());
    unlink(path);
    console_t *c = console_new(path, err, sizeof err);
    assert_non_null(c);
    console_write(c, "one\r\ntwo", 8);
    console_destroy(&c);  /* flushes the partial line */
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char text[32] = {0};
    assert_int_equal(fread(text, 1, sizeof text - 1, f), 7);
    fclose(f);
    assert_string_equal(text, "one\ntwo");  /* carriage returns dropped */
    unlink(path);

    assert_null(console_new("/nonexistent-dir/x.log", err, sizeof err));
    assert_non_null(strstr(err, "No such file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cursors_and_wrap),
        cmocka_unit_test(test_log_file_gets_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
