/* Commands about telemetry and drift (cmd_telemetry.c), listed in other groups' tables by the
 * entries below: `ganglion models profile` and `models drift` in cmd_models.c; and the `alerts`
 * group (cmd_alerts_group, cli.h). */
#ifndef GN_CMD_TELEMETRY_H
#define GN_CMD_TELEMETRY_H

#include "cli.h"

#define CMD_TELEMETRY_PROFILE_NOPTS 10
extern const cli_opt cmd_telemetry_profile_opts[CMD_TELEMETRY_PROFILE_NOPTS];
/* Computes a reference profile from training data (args->pos[0], a .csv or .npy file). */
int cmd_telemetry_profile_run(const cli_ctx *ctx, const cli_args *args, gn_err *err) GN_WUR;

#define CMD_TELEMETRY_DRIFT_NOPTS 5
extern const cli_opt cmd_telemetry_drift_opts[CMD_TELEMETRY_DRIFT_NOPTS];
/* Shows the fleet's drift of model args->pos[0] version args->pos[1]. */
int cmd_telemetry_drift_run(const cli_ctx *ctx, const cli_args *args, gn_err *err) GN_WUR;

#define CMD_TELEMETRY_CANARY_NOPTS 3
extern const cli_opt cmd_telemetry_canary_opts[CMD_TELEMETRY_CANARY_NOPTS];
/* Judges model args->pos[0]'s version args->pos[1] (canary) against args->pos[2] (control). */
int cmd_telemetry_canary_run(const cli_ctx *ctx, const cli_args *args, gn_err *err) GN_WUR;

/* The cli_cmd entries of `models profile`, `models drift` and `models canary`. */
#define CMD_TELEMETRY_PROFILE                                                                                      \
	{                                                                                                          \
		"profile", "DATA.csv|DATA.npy",                                                                    \
			"Compute a reference profile from training data (read locally, nothing sent): bins from "  \
			"the data's quantiles per numeric feature, a vocabulary per categorical one, per-channel " \
			"summaries for images (a 4-D .npy), and with --outputs the class histogram and "           \
			"confidence deciles.",                                                                     \
			cmd_telemetry_profile_opts, CMD_TELEMETRY_PROFILE_NOPTS, 1, 1, cmd_telemetry_profile_run   \
	}

#define CMD_TELEMETRY_DRIFT                                                                                \
	{                                                                                                  \
		"drift", "NAME VERSION",                                                                   \
			"Show the fleet's drift of a model version against its reference profile: per "    \
			"feature PSI, Jensen-Shannon distance and L-infinity of the devices' counts "      \
			"summed, with the reference and observed shares per bin.",                         \
			cmd_telemetry_drift_opts, CMD_TELEMETRY_DRIFT_NOPTS, 2, 2, cmd_telemetry_drift_run \
	}

#define CMD_TELEMETRY_CANARY                                                                                        \
	{                                                                                                           \
		"canary", "NAME CANARY CONTROL",                                                                    \
			"Judge version CANARY against version CONTROL over the same windows: error rate, p95 "      \
			"latency and output drift per device window, a Mann-Whitney U test each at 98 % "           \
			"confidence with a tolerance; pass, marginal, fail, or inconclusive with too little data.", \
			cmd_telemetry_canary_opts, CMD_TELEMETRY_CANARY_NOPTS, 3, 3, cmd_telemetry_canary_run       \
	}

#endif
