# Writes what the image holds, `name version` per line, for `takehome images list` and the
# candidates' ENVIRONMENT.md: R itself, then every installed R package.
v <- R.version
cat(sprintf("R %s.%s\n", v$major, v$minor))
ip <- installed.packages()[, c("Package", "Version")]
ip <- ip[!duplicated(ip[, "Package"]), , drop = FALSE]
ip <- ip[order(tolower(ip[, "Package"])), , drop = FALSE]
cat(sprintf("%s %s\n", ip[, "Package"], ip[, "Version"]), sep = "")
