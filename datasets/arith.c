/* arith.c - the built-in corpus: arithmetic problems with long, worked, step-by-step solutions.
 *
 * The point of this corpus is to be learnable and predictable: a solution is a deterministic
 * function of its question, written in one fixed layout, with every carry and borrow spelled out.
 * A model that has learned the layout can predict many tokens ahead, which is what the extra
 * prediction heads (and speculative decoding with them) exploit.
 *
 * Layout rules shared by all kinds:
 *  - numbers that are combined column by column are first written one under another, right-aligned
 *    and padded with leading zeros, so a column's digits sit at a fixed distance from each other;
 *  - every step writes the same fields even when they are zero ("carry 0", "+0=...");
 *  - the last step of a row writes its whole value ("write 28") instead of a carry;
 *  - a chain ("a - b - c", "a * b * c", "n / d / e") is worked one operation at a time, left to
 *    right: "Step j: x op y", that operation's usual working, then "x op y = z".
 *
 * Levels (typical example length; the tables in each generator give the exact sizes):
 *  1..5  short to medium problems, about 200 (level 1) to 1,750 (level 5) bytes: 2 to 8 numbers
 *        added, up to 3 subtracted, up to 8 by 6 digit products, up to 12 digit quotients by one
 *        divisor. Their bytes and rng draws are frozen (tests pin them): trained models and the
 *        mixed corpus (difficulty 0, levels 1..DS_ARITH_MIXED_MAX) depend on them.
 *  6     about 2,200 bytes: 8-11 numbers of 12-15 digits added, 3 subtractions of 13-16 digit
 *        numbers, up to 9 by 7 digit products, a division chain by 2 divisors.
 *  7     about 3,500 bytes: 14-20 numbers of 14-16 digits, 4 subtractions of 17-18 digits,
 *        up to 10 by 8 digit products, 4 divisors.
 *  8     about 5,200 bytes: 26-34 numbers of 15-16 digits, 6 subtractions of 18 digits, products of
 *        3 factors of 5-6 digits (two long multiplications), 6 two-digit divisors.
 *
 * All values stay below 10^18 so plain uint64_t arithmetic is exact. Text is appended to a
 * counting buffer through one small printf-style helper rather than snprintf: that keeps 8 MiB
 * of examples well under a second. */
#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

#include "datasets/ds.h"

/* Output that counts the bytes it would need even past the end of the buffer (like snprintf). */
typedef struct {
    char *buf;
    size_t cap, len;
} Out;

static void put_c(Out *o, char c) {
    if (o->len < o->cap) o->buf[o->len] = c;
    o->len++;
}

static void put_s(Out *o, const char *s) {
    while (*s) put_c(o, *s++);
}

/* v in decimal, padded with leading zeros to at least width digits */
static void put_u(Out *o, uint64_t v, int width) {
    char tmp[24]; /* filled from the end; 2^64 has 20 digits */
    int i = 24;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v && i > 0);
    while (24 - i < width && i > 0) tmp[--i] = '0';
    for (; i < 24; i++) put_c(o, tmp[i]);
}

/* printf into the output, every piece of the worked solutions written through it. Only the
 * conversions the generator uses: %d, %s, %c and %" PRIu64 " (an l or ll before the u), done by
 * the appends above, three times faster than vsnprintf on 8 MiB of examples. */
static void put_f(Out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put_f(Out *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    for (const char *f = fmt; *f; f++) {
        if (*f != '%') {
            put_c(o, *f);
            continue;
        }
        int longs = 0;
        while (*++f == 'l') longs++;
        if (*f == 'u' && longs) {
            put_u(o, longs == 1 ? (uint64_t)va_arg(ap, unsigned long) : (uint64_t)va_arg(ap, unsigned long long), 0);
        } else if (*f == 'd' && !longs) {
            const int v = va_arg(ap, int);
            if (v < 0) put_c(o, '-');
            put_u(o, v < 0 ? -(uint64_t)v : (uint64_t)v, 0);
        } else if (*f == 's' && !longs) {
            put_s(o, va_arg(ap, const char *));
        } else {
            assert(*f == 'c' && !longs && "put_f: a conversion the generator does not use");
            put_c(o, (char)va_arg(ap, int));
        }
    }
    va_end(ap);
}

/* End of a column step: ", write 8 carry 4\n", or on the last column the whole value ", write 48\n". */
static void put_write_carry(Out *o, uint64_t s, int last) {
    if (last) put_f(o, ", write %" PRIu64 "\n", s);
    else put_f(o, ", write %" PRIu64 " carry %" PRIu64 "\n", s % 10, s / 10);
}

static int n_digits(uint64_t v) {
    int n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

static uint64_t pow10u(int n) {
    uint64_t p = 1;
    while (n-- > 0) p *= 10;
    return p;
}

/* digit i (0 = ones) of v */
static int digit_at(uint64_t v, int i) { return (int)(v / pow10u(i) % 10); }

/* uniform in [lo, hi] */
static int rand_int(MtpRng *rng, int lo, int hi) { return lo + (int)mtp_rng_below(rng, (uint64_t)(hi - lo + 1)); }

/* a number with exactly n digits (1 <= n <= 18) */
static uint64_t rand_digits(MtpRng *rng, int n) {
    uint64_t lo = pow10u(n - 1);
    if (n == 1) return mtp_rng_below(rng, 10);
    return lo + mtp_rng_below(rng, 9 * lo);
}

/* Writes the rows right-aligned with leading zeros, then adds them column by column from the
   right: "col 3: carry 1, +4=5, +7=12, +2=14, write 4 carry 1". Adding one digit at a time keeps
   every step a single-digit addition however many rows there are. Returns the sum. */
static uint64_t add_columns(Out *o, const uint64_t *v, int k) {
    int width = 1;
    uint64_t sum = 0;
    for (int r = 0; r < k; r++) {
        if (n_digits(v[r]) > width) width = n_digits(v[r]);
        sum += v[r];
    }
    put_s(o, "Align the numbers:\n");
    for (int r = 0; r < k; r++) {
        put_u(o, v[r], width);
        put_c(o, '\n');
    }
    put_s(o, "Add column by column from the right:\n");
    int carry = 0;
    for (int i = 0; i < width; i++) {
        int s = carry;
        put_f(o, "col %d: carry %d", i + 1, carry);
        for (int r = 0; r < k; r++) {
            int d = digit_at(v[r], i);
            s += d;
            put_f(o, ", +%d=%d", d, s);
        }
        put_write_carry(o, (uint64_t)s, i == width - 1);
        carry = s / 10;
    }
    return sum;
}

/* a - b (a >= b) column by column with borrows:
   "col 1: 0-5-0 < 0, borrow: 10-5-0=5, write 5 borrow 1" or "col 2: 8-3-1=4, write 4 borrow 0" */
static uint64_t sub_columns(Out *o, uint64_t a, uint64_t b) {
    int width = n_digits(a);
    put_u(o, a, width);
    put_c(o, '\n');
    put_u(o, b, width);
    put_c(o, '\n');
    int borrow = 0;
    for (int i = 0; i < width; i++) {
        int x = digit_at(a, i), y = digit_at(b, i);
        put_f(o, "col %d: %d-%d-%d", i + 1, x, y, borrow);
        int d = x - y - borrow;
        if (d < 0) {
            d += 10;
            put_f(o, " < 0, borrow: 1%d-%d-%d=%d, write %d borrow 1\n", x, y, borrow, d, d);
            borrow = 1;
        } else {
            put_f(o, "=%d, write %d borrow 0\n", d, d);
            borrow = 0;
        }
    }
    return a - b;
}
/* Per-level sizes of the problems, indexed by level (entry 0 unused). Levels 1..5 must never change:
   they fix the bytes and the rng draws of existing corpora, which trained models and tests rely on.
   Levels 6..8 only grow the same kinds; their digit bounds keep every value below 10^18 (the
   worst-case sum of a chain's digit counts is at most 18, and 34 rows of 16 digits stay below it). */
#define LEVELS (DS_ARITH_MAX_DIFFICULTY + 1)
#define LEVEL_TABLE(name) _Static_assert(sizeof(name) / sizeof(name)[0] == LEVELS, #name " needs one entry per level")

/* "Compute a + b + c." : several numbers of similar length, summed column by column */
static uint64_t gen_add(Out *o, MtpRng *rng, int level) {
    static const int rows_lo[] = {0, 2, 3, 4, 5, 6, 8, 14, 26}, rows_hi[] = {0, 2, 3, 4, 5, 8, 11, 20, 34};
    static const int dig_lo[] = {0, 2, 3, 4, 6, 10, 12, 14, 15}, dig_hi[] = {0, 3, 4, 6, 9, 13, 15, 16, 16};
    LEVEL_TABLE(rows_lo); LEVEL_TABLE(rows_hi); LEVEL_TABLE(dig_lo); LEVEL_TABLE(dig_hi);
    uint64_t v[34];
    int k = rand_int(rng, rows_lo[level], rows_hi[level]);
    for (int r = 0; r < k; r++) v[r] = rand_digits(rng, rand_int(rng, dig_lo[level], dig_hi[level]));
    put_s(o, "Compute ");
    for (int r = 0; r < k; r++) put_f(o, "%s%" PRIu64, r ? " + " : "", v[r]);
    put_s(o, ".\n");
    uint64_t sum = add_columns(o, v, k);
    put_f(o, "Sum = %" PRIu64 "\n", sum);
    return sum;
}

/* "Step 2: 5012 - 37\n": the header of one link of a chain */
static void put_step(Out *o, int j, uint64_t a, const char *op, uint64_t b) {
    put_f(o, "Step %d: %" PRIu64 "%s%" PRIu64 "\n", j + 1, a, op, b);
}

/* "5012 - 37 = 4975\n": the result of one link of a chain */
static void put_link(Out *o, uint64_t a, const char *op, uint64_t b, uint64_t r) {
    put_f(o, "%" PRIu64 "%s%" PRIu64 " = %" PRIu64 "\n", a, op, b, r);
}

/* "Compute a - b - c." : one subtraction at a time, each column by column with borrows */
static uint64_t gen_sub(Out *o, MtpRng *rng, int level) {
    static const int terms[] = {0, 1, 1, 2, 2, 3, 3, 4, 6};
    static const int dig_lo[] = {0, 2, 4, 5, 7, 11, 13, 17, 18}, dig_hi[] = {0, 3, 6, 7, 9, 14, 16, 18, 18};
    LEVEL_TABLE(terms); LEVEL_TABLE(dig_lo); LEVEL_TABLE(dig_hi);
    uint64_t a = rand_digits(rng, rand_int(rng, dig_lo[level], dig_hi[level]));
    uint64_t b[6], rest = a;
    int k = terms[level];
    /* each subtrahend at most what is left, so the answer is never negative; the lower bound keeps
       it from being trivially small */
    for (int j = 0; j < k; j++) {
        b[j] = rest / 10 + mtp_rng_below(rng, rest - rest / 10 + 1);
        if (j < k - 1) b[j] /= (uint64_t)(k - j); /* leave room for the later ones */
        rest -= b[j];
    }
    put_f(o, "Compute %" PRIu64, a);
    for (int j = 0; j < k; j++) put_f(o, " - %" PRIu64, b[j]);
    put_s(o, ".\n");
    put_s(o, k > 1 ? "Subtract one number at a time, column by column from the right.\n"
                   : "Subtract column by column from the right:\n");
    uint64_t cur = a;
    for (int j = 0; j < k; j++) {
        if (k > 1) put_step(o, j, cur, " - ", b[j]);
        uint64_t next = sub_columns(o, cur, b[j]);
        put_link(o, cur, " - ", b[j], next);
        cur = next;
    }
    put_f(o, "Difference = %" PRIu64 "\n", cur);
    return cur;
}

/* a * b (a*b < 10^18): one partial product per digit of b, each digit by digit with carries
   ("8*6+0=48, write 8 carry 4"), then the partial products summed column by column */
static uint64_t mul_columns(Out *o, uint64_t a, uint64_t b) {
    int na = n_digits(a), nb = n_digits(b);
    uint64_t part[20];
    put_f(o, "Multiply %" PRIu64 " by each digit of %" PRIu64 ", from the right:\n", a, b);
    for (int j = 0; j < nb; j++) {
        int m = digit_at(b, j);
        uint64_t p = a * (uint64_t)m;
        part[j] = p * pow10u(j);
        put_f(o, "Digit %d (shift %d):", m, j);
        if (m == 0) {
            put_f(o, " %" PRIu64 "*0 = 0\n", a);
            continue;
        }
        put_c(o, '\n');
        int carry = 0;
        for (int i = 0; i < na; i++) {
            int x = digit_at(a, i), s = x * m + carry;
            put_f(o, "%d*%d+%d=%d", x, m, carry, s);
            put_write_carry(o, (uint64_t)s, i == na - 1);
            carry = s / 10;
        }
        put_f(o, "%" PRIu64 "*%d = %" PRIu64, a, m, p);
        if (j > 0) put_f(o, ", shifted %d: %" PRIu64, j, part[j]);
        put_c(o, '\n');
    }
    if (nb > 1) {
        put_s(o, "Add the partial products.\n");
        add_columns(o, part, nb);
    }
    return a * b;
}

/* a factor with n digits; a one-digit factor is 2..9 so that it is never trivial */
static uint64_t rand_factor(MtpRng *rng, int n) { return n == 1 ? (uint64_t)rand_int(rng, 2, 9) : rand_digits(rng, n); }

/* A chain "Compute x op v0 op v1 ... ." worked one operation at a time: each step's working from
   apply (mul_columns, div_long), framed by "Step j: x op y" and "x op y = z" lines when there is more
   than one; one operation is worked alone, as the lower levels always were. Returns the result. */
static uint64_t work_chain(Out *o, uint64_t x, const char *op, const uint64_t *v, int k, const char *how,
                           uint64_t (*apply)(Out *, uint64_t, uint64_t)) {
    put_f(o, "Compute %" PRIu64, x);
    for (int j = 0; j < k; j++) put_f(o, "%s%" PRIu64, op, v[j]);
    put_s(o, ".\n");
    if (k > 1) put_s(o, how);
    for (int j = 0; j < k; j++) {
        if (k > 1) put_step(o, j, x, op, v[j]);
        uint64_t next = apply(o, x, v[j]);
        if (k > 1) put_link(o, x, op, v[j], next);
        x = next;
    }
    return x;
}

/* "Compute a * b [* c]." : one multiplication at a time, the running product times the next factor */
static uint64_t gen_mul(Out *o, MtpRng *rng, int level) {
    static const int factors[] = {0, 2, 2, 2, 2, 2, 2, 2, 3};
    static const int da_lo[] = {0, 2, 2, 3, 4, 6, 7, 9, 5}, da_hi[] = {0, 2, 3, 4, 5, 8, 9, 10, 6};
    static const int db_lo[] = {0, 1, 2, 2, 3, 5, 5, 7, 5}, db_hi[] = {0, 1, 2, 3, 4, 6, 7, 8, 6};
    LEVEL_TABLE(factors); LEVEL_TABLE(da_lo); LEVEL_TABLE(da_hi); LEVEL_TABLE(db_lo); LEVEL_TABLE(db_hi);
    uint64_t a = rand_digits(rng, rand_int(rng, da_lo[level], da_hi[level]));
    uint64_t b[2];
    int k = factors[level] - 1; /* multiplications */
    for (int j = 0; j < k; j++) b[j] = rand_factor(rng, rand_int(rng, db_lo[level], db_hi[level]));
    uint64_t cur = work_chain(o, a, " * ", b, k, "Multiply one number at a time.\n", mul_columns);
    put_f(o, "Product = %" PRIu64 "\n", cur);
    return cur;
}

/* n / d with d dividing n: a table of multiples of d, then long division from the left, each
   quotient digit x read off the table and justified by x*d <= part < (x+1)*d:
   "Bring down 2: 412, 9*43=387 <= 412 < 10*43=430, digit 9, 412-387=25" */
static uint64_t div_long(Out *o, uint64_t n, uint64_t d) {
    int nn = n_digits(n);
    put_f(o, "Multiples of %" PRIu64 ":\n", d);
    for (uint64_t m = 1; m <= 9; m++) put_f(o, "%" PRIu64 "*%" PRIu64 "=%" PRIu64 "\n", m, d, m * d);
    put_s(o, "Divide from the left:\n");
    /* the first partial dividend is the shortest prefix of n that is >= d (n >= d since q >= 1) */
    int pos = nn - 1;
    uint64_t cur = 0;
    while (pos >= 0) {
        cur = cur * 10 + (uint64_t)digit_at(n, pos--);
        if (cur >= d) break;
    }
    int first = 1;
    for (;;) {
        uint64_t x = cur / d, y = x * d;
        if (first) put_s(o, "Take ");
        else put_f(o, "Bring down %" PRIu64 ": ", cur % 10);
        first = 0;
        put_f(o, "%" PRIu64 ", %" PRIu64 "*%" PRIu64 "=%" PRIu64 " <= %" PRIu64 " < %" PRIu64 "*%" PRIu64 "=%" PRIu64, cur, x,
              d, y, cur, x + 1, d, y + d);
        put_f(o, ", digit %" PRIu64 ", %" PRIu64 "-%" PRIu64 "=%" PRIu64 "\n", x, cur, y, cur - y);
        if (pos < 0) break;
        cur = (cur - y) * 10 + (uint64_t)digit_at(n, pos--);
    }
    return n / d;
}

/* "Compute n / d [/ e ...]." with n = q*d*e*... exactly: one long division at a time, left to right */
static uint64_t gen_div(Out *o, MtpRng *rng, int level) {
    static const int divisors[] = {0, 1, 1, 1, 1, 1, 2, 4, 6};
    static const int dq_lo[] = {0, 2, 3, 4, 6, 10, 8, 5, 4}, dq_hi[] = {0, 2, 3, 5, 7, 12, 11, 6, 6};
    static const int dd_lo[] = {0, 1, 1, 2, 3, 5, 2, 2, 2}, dd_hi[] = {0, 1, 1, 3, 4, 6, 3, 3, 2};
    LEVEL_TABLE(divisors); LEVEL_TABLE(dq_lo); LEVEL_TABLE(dq_hi); LEVEL_TABLE(dd_lo); LEVEL_TABLE(dd_hi);
    int nq = rand_int(rng, dq_lo[level], dq_hi[level]);
    int k = divisors[level];
    uint64_t d[6];
    for (int j = 0; j < k; j++) d[j] = rand_factor(rng, rand_int(rng, dd_lo[level], dd_hi[level]));
    uint64_t q = rand_digits(rng, nq);
    uint64_t n = q;
    for (int j = 0; j < k; j++) n *= d[j];
    uint64_t cur = work_chain(o, n, " / ", d, k, "Divide by one number at a time.\n", div_long);
    put_f(o, "Quotient = %" PRIu64 "\n", cur);
    return cur;
}

size_t ds_arith_example(char *buf, size_t cap, MtpRng *rng, int difficulty) {
    Out o = {buf, buf ? cap : 0, 0};
    if (difficulty < 0 || difficulty > DS_ARITH_MAX_DIFFICULTY) {
        if (o.cap) buf[0] = '\0';
        return 0;
    }
    /* the mixed corpus keeps to the short levels: its stream (and models trained on it) predate 6..8 */
    int level = difficulty ? difficulty : rand_int(rng, 1, DS_ARITH_MIXED_MAX);
    uint64_t answer = 0;
    switch (mtp_rng_below(rng, 4)) {
    case 0: answer = gen_add(&o, rng, level); break;
    case 1: answer = gen_sub(&o, rng, level); break;
    case 2: answer = gen_mul(&o, rng, level); break;
    default: answer = gen_div(&o, rng, level); break;
    }
    put_f(&o, "#### %" PRIu64 "\n", answer);
    if (o.cap) buf[o.len < o.cap ? o.len : o.cap - 1] = '\0';
    return o.len;
}
