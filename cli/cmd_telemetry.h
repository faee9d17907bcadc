/* Commands about telemetry and drift (cmd_telemetry.c), listed in other groups' tables by the
 * entries below: `ganglion models profile` in cmd_models.c. */
#ifndef GN_CMD_TELEMETRY_H
#define GN_CMD_TELEMETRY_H

#include "cli.h"

#define CMD_TELEMETRY_PROFILE_NOPTS 10
extern const cli_opt cmd_telemetry_profile_opts[CMD_TELEMETRY_PROFILE_NOPTS];
/* Computes a reference profile from training data (args->pos[0], a .csv or .npy file). */
int cmd_telemetry_profile_run(const cli_ctx *ctx, const cli_args *args, gn_err *err) GN_WUR;

/* The cli_cmd entry of `models profile`. */
#define CMD_TELEMETRY_PROFILE                                                                                      \
	{                                                                                                          \
		"profile", "DATA.csv|DATA.npy",                                                                    \
			"Compute a reference profile from training data (read locally, nothing sent): bins from "  \
			"the data's quantiles per numeric feature, a vocabulary per categorical one, per-channel " \
			"summaries for images (a 4-D .npy), and with --outputs the class histogram and "           \
			"confidence deciles.",                                                                     \
			cmd_telemetry_profile_opts, CMD_TELEMETRY_PROFILE_NOPTS, 1, 1, cmd_telemetry_profile_run   \
	}

#endif
