/* Compiled kernels of phase1lib.engine.kernels: mezzanine sizing with the combined stresses, and the equity
 * IRR's Newton iterations, one row at a time.
 *
 * Every expression mirrors the numpy code it replaces (phase1lib/engine/mezz.py size_mezz with
 * evaluate._mezz_group; irr.py _newton with its NPV polynomials) operation for operation: same operands, same
 * order, IEEE double arithmetic. It must be compiled without value-changing optimisations
 * (-O2 -fno-fast-math -ffp-contract=off: no fused multiply-add, no reassociation), which is what makes the two
 * paths bit-identical (tests/test_kernels.py). Arrays are C-contiguous; int64 for integers.
 */
#include <math.h>
#include <stdint.h>

#define SCULPTED 0
#define ANNUITY 1

static double np_minimum(double a, double b) { return (a != a || b != b) ? NAN : (a <= b ? a : b); }
static double np_maximum(double a, double b) { return (a != a || b != b) ? NAN : (a >= b ? a : b); }

/* scratch: 6 x width doubles */
void mezz_group(const double *lender_pos, const double *u, const double *stress_cash, int64_t n_periods,
                int64_t scenarios, const int64_t *cls, const int64_t *cases, const double *senior,
                const double *coupon, const double *dscr, const int64_t *n_m, const int64_t *amort,
                const double *headroom, int64_t ppy, int64_t width, const int64_t *span, int64_t rows,
                double *amount_out, double *min_ratio_out, double *service_out, double *totals_out,
                double *scratch) {
    double *cap = scratch, *ss = scratch + width, *vp = scratch + 2 * width, *acc = scratch + 3 * width;
    double *lf = scratch + 4 * width, *inv = scratch + 5 * width;
    for (int64_t i = 0; i < rows; i++) {
        const int64_t c = cases[i], k = cls[i], periods = n_m[i], code = amort[i];
        const double s_amount = senior[i];
        const double rr = coupon[i] / (double)ppy;
        const double v = 1.0 / (1.0 + rr);
        const double m = (double)(periods > 1 ? periods : 1);
        const double *lp = lender_pos + c * n_periods, *uk = u + k * n_periods;
        double *svc_row = service_out + i * width;
        double running = 0.0;
        for (int64_t p = 0; p < width; p++) {
            vp[p] = p == 0 ? v : vp[p - 1] * v;
            const double cover = lp[p] / dscr[i];
            ss[p] = s_amount * uk[p];
            const double room = cover - ss[p];
            const int keep = room > 1e-9 * cover;
            cap[p] = (keep && p < periods) ? room : 0.0;
            if (code == SCULPTED) {
                running = p == 0 ? cap[p] * vp[p] : running + cap[p] * vp[p];
                acc[p] = running;
            }
        }
        double min_cap = INFINITY, capacity;
        if (code == SCULPTED) {
            capacity = acc[width - 1];
        } else if (code == ANNUITY) {
            const int64_t last = periods < width ? periods : width;
            for (int64_t p = 0; p < last; p++)
                if (cap[p] < min_cap) min_cap = cap[p];
            const double v_m = vp[periods - 1 > 0 ? periods - 1 : 0];
            const double factor = rr == 0 ? m : (1.0 - v_m) / rr;
            capacity = min_cap * factor;
        } else {
            capacity = INFINITY;
            for (int64_t p = 0; p < width; p++) {
                lf[p] = 1.0 / m + rr * ((m - (double)(p + 1)) + 1.0) / m;
                if (p < periods && lf[p] > 0) {
                    const double ratio = lf[p] != 0 ? cap[p] / lf[p] : INFINITY;
                    if (ratio < capacity) capacity = ratio;
                }
            }
        }
        if (!(periods > 0)) capacity = 0.0;
        const double amt = np_maximum(np_minimum(capacity, headroom[i]), 0.0);
        const double scale = capacity != 0 ? amt / capacity : 0.0;
        double lowest = INFINITY;
        for (int64_t p = 0; p < width; p++) {
            const int live = p < periods;
            double svc;
            if (code == SCULPTED) {
                svc = cap[p] * scale;
                const double owed = p == 0 ? capacity : (capacity - acc[p - 1]) / vp[p - 1];
                const double principal = cap[p] - owed * rr;
                if (live && principal < lowest) lowest = principal;
            } else if (code == ANNUITY) {
                svc = live ? min_cap * scale : 0.0;
            } else {
                svc = live ? amt * lf[p] : 0.0;
            }
            svc_row[p] = svc;
        }
        amount_out[i] = amt;
        if (code == SCULPTED) min_ratio_out[i] = amt > 0 ? lowest / capacity : 0.0;
        if (amt > 0) {
            int64_t last = 0;
            const int64_t end = span[i] < width ? span[i] : width;
            for (int64_t p = 0; p < end; p++) {
                const double combined = ss[p] + svc_row[p];
                const int served = combined > 0;
                inv[p] = served ? 1.0 / combined : NAN;
                if (served) last = p + 1;
            }
            for (int64_t s = 0; s < scenarios; s++) {
                const double *cash = stress_cash + (c * scenarios + s) * n_periods;
                double best = INFINITY;
                int found = 0;
                for (int64_t p = 0; p < last; p++) {
                    const double value = cash[p] * inv[p];
                    if (value < best) { best = value; found = 1; }  /* NaN (not served) never is */
                }
                totals_out[i * scenarios + s] = found ? best : NAN;
            }
        }
    }
}

/* irr.py: the constants of irr._newton */
static const int MAX_ITER = 100;
static const double STEP_TOL = 1e-9, ERROR_TOL = 1e-14, NOISE = 1e-9;
static const double X_MIN = 1.0 / 11.0, X_MAX = 100.0;

static void horner(const double *coef, int64_t terms, double x, double *value_out, double *slope_out) {
    double value = 0.0, slope = 0.0;
    for (int64_t j = terms - 1; j >= 0; j--) {
        slope = slope * x;
        slope = slope + value;
        value = value * x;
        value = value + coef[j];
    }
    *value_out = value;
    *slope_out = slope;
}

static void ones_horner(int64_t count, double x, double *value_out, double *slope_out) {
    double value = 0.0, slope = 0.0;
    for (int64_t j = 0; j < count; j++) {
        slope = slope * x;
        slope = slope + value;
        value = value * x;
        value = value + 1.0;
    }
    *value_out = value;
    *slope_out = slope;
}

static double int_power(double base, int64_t k) {
    double out = 1.0;
    for (int64_t j = 0; j < k; j++) out = out * base;
    return out;
}

static double bin_power(double base, int64_t e) {
    double result = 1.0, b = base;
    while (e > 0) {
        if (e & 1) result = result * b;
        b = b * b;
        e >>= 1;
    }
    return result;
}

static double halley(double m0, double m1, double m2, double equity) {
    const double f = m0 - equity;
    const double x = 1.0 - 2.0 * f * m1 / (2.0 * m1 * m1 - f * m2);
    return (isfinite(x) && x > X_MIN / 2 && x < 2.0) ? x : 1.0;
}

/* one Newton step of irr._newton; returns done */
static int newton_step(double value, double slope, double *guess, double eq, double *previous) {
    const double step = (value - eq) / slope;
    double new_x = *guess - step;
    const int bad = !isfinite(new_x) || new_x <= 0;
    if (bad) new_x = *guess * 0.5;
    const double size = fabs(step);
    const int quadratic = isfinite(*previous) && size <= 1e-5 * new_x && size <= 0.1 * *previous
                          && size * size * size <= ERROR_TOL * new_x * *previous * *previous;
    const int done = (size <= STEP_TOL * fabs(new_x) || quadratic) && !bad;
    *guess = new_x;
    *previous = size;
    return done;
}

/* irr.irr_factor_yearly; yearly is rows x years */
void irr_yearly(const double *yearly, int64_t rows, int64_t years, const double *point, const int64_t *point_year,
                double residual, const double *equity, int64_t ppy, double *x_out) {
    for (int64_t j = 0; j < rows; j++) {
        const double *coef = yearly + j * years;
        double lowest = INFINITY, highest = -INFINITY;
        for (int64_t t = 0; t < years; t++) {
            if (coef[t] < lowest) lowest = coef[t];
            if (coef[t] > highest) highest = coef[t];
        }
        const double eq = equity[j];
        if (!(eq > 0 && lowest >= -NOISE * eq && (highest > 0 || point[j] > 0 || residual > 0))) continue;
        double m0 = 0.0, m1 = 0.0, m2 = 0.0;
        for (int64_t t = 0; t < years; t++) {
            double w1 = 0.0, w2 = 0.0;
            for (int64_t q = 1; q <= ppy; q++) {
                const double period = (double)(t * ppy + q);
                w1 += period;
                w2 += period * (period - 1.0);
            }
            m0 += coef[t];
            m1 += w1 * coef[t];
            m2 += w2 * coef[t];
        }
        m0 = m0 * (double)ppy;
        int64_t period_i = point_year[j] * ppy;
        m0 = m0 + point[j];
        m1 = m1 + point[j] * (double)period_i;
        m2 = m2 + point[j] * (double)period_i * ((double)period_i - 1.0);
        period_i = years * ppy;
        m0 = m0 + residual;
        m1 = m1 + residual * (double)period_i;
        m2 = m2 + residual * (double)period_i * ((double)period_i - 1.0);
        double guess = halley(m0, m1, m2, eq), previous = INFINITY;
        for (int it = 0; it < MAX_ITER; it++) {
            const double x = guess;
            const double z = int_power(x, ppy);
            double q, dq, g0, dg0;
            horner(coef, years, z, &q, &dq);
            ones_horner(ppy, x, &g0, &dg0);
            const double g = g0 * x, dg = g0 + dg0 * x;
            const double dz = (double)ppy * z / x;
            double value = g * q;
            double slope = dg * q + g * dq * dz;
            const double zk = bin_power(z, point_year[j]);
            value += point[j] * zk;
            slope += point[j] * (double)point_year[j] * zk * ((double)ppy / x);
            if (residual != 0) {
                const double zy = int_power(z, years);
                value += residual * zy;
                slope += residual * (double)years * zy * ((double)ppy / x);
            }
            if (newton_step(value, slope, &guess, eq, &previous)) {
                if (X_MIN <= guess && guess <= X_MAX) x_out[j] = guess;
                break;
            }
        }
    }
}

/* irr.irr_factor_periods; flows is rows x n */
void irr_periods(const double *flows, int64_t rows, int64_t n, const double *equity, double *x_out) {
    for (int64_t j = 0; j < rows; j++) {
        const double *coef = flows + j * n;
        double lowest = INFINITY, highest = -INFINITY;
        for (int64_t t = 0; t < n; t++) {
            if (coef[t] < lowest) lowest = coef[t];
            if (coef[t] > highest) highest = coef[t];
        }
        const double eq = equity[j];
        if (!(eq > 0 && lowest >= -NOISE * eq && highest > 0)) continue;
        double m0 = 0.0, m1 = 0.0, m2 = 0.0;
        for (int64_t t = 0; t < n; t++) {
            const double period = (double)(t + 1);
            m0 += coef[t];
            m1 += period * coef[t];
            m2 += (period * (period - 1.0)) * coef[t];
        }
        double guess = halley(m0 * 1.0, m1, m2, eq), previous = INFINITY;
        for (int it = 0; it < MAX_ITER; it++) {
            double q, dq;
            horner(coef, n, guess, &q, &dq);
            const double value = q * guess;
            const double slope = q + dq * guess;
            if (newton_step(value, slope, &guess, eq, &previous)) {
                if (X_MIN <= guess && guess <= X_MAX) x_out[j] = guess;
                break;
            }
        }
    }
}
