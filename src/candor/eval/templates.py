"""The HTML of the eval reports (Jinja2; rendered by :mod:`candor.eval.report`)."""
# ruff: noqa: E501

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>candor eval {{ d.kind }}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 1080px; margin: 24px auto; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px;
     border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
td { white-space: nowrap; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
.key { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; }
.key div { border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px; min-width: 140px; }
.key b { display: block; font-size: 20px; } .key span { color: #666; font-size: 12px; }
img { max-width: 100%; } .note { color: #555; font-size: 13px; }
.bad { color: #b00020; font-weight: 600; } .ok { color: #1b7f3b; font-weight: 600; }
code { background: #f4f4f4; padding: 1px 4px; border-radius: 3px; }
</style></head><body>
<h1>{{ title }}</h1>
<p class="sub">candor {{ d.candor_version }} · {{ d.generated }} · model {{ d.settings.model_version }}
 · backend {{ d.settings.backend }} · detector {{ d.settings.detector }} · scoring {{ d.settings.scoring }}</p>
{% if d.command %}<p class="note">Reproduce: <code>{{ d.command }}</code></p>{% endif %}
{{ body | safe }}
<h2>About these numbers</h2>
<p class="note">FMR (false match rate): the share of different-person pairs whose Similarity reaches
the threshold. FNMR (false non-match rate): the share of same-person pairs that do not. A photo in
which no face was detected is never dropped: its same-person pairs count as non-matches.
Intervals are 95%: Wilson intervals for proportions, percentile bootstrap over people where pairs
share photos. The full numbers are in <code>summary.json</code> next to this file.</p>
</body></html>
"""

VERIFICATION = """
<div class="key">
{% for k in key %}<div><b>{{ k[1] }}</b><span>{{ k[0] }}</span></div>{% endfor %}
</div>
<p>{{ d.pairs | num }} pairs ({{ d.same_pairs | num }} same person, {{ d.different_pairs | num }}
different) from <code>{{ d.pairs_file }}</code>; {{ d.photos | num }} photos embedded{% if d.train_pairs_file %} (with the training pairs'){% endif %}.
<b>{{ d.photos_without_face }}</b> photo(s) without a detected face, affecting
{{ d.pairs_with_missing_face.total }} pair(s) ({{ d.pairs_with_missing_face.same }} same-person,
scored as non-matches).</p>
<h2>Accuracy</h2>
<table><tr><th class="l">protocol</th><th>threshold (Similarity)</th><th>accuracy</th></tr>
{% if a.kfold %}<tr><td class="l">{{ a.kfold.folds }}-fold (threshold from the other folds)</td>
<td>per fold</td><td>{{ a.kfold.mean | pct }} ± {{ a.kfold.std | pct }} (s.e. {{ a.kfold.stderr | pct }})</td></tr>{% endif %}
{% if a.train_test %}<tr><td class="l">threshold chosen on <code>{{ d.train_pairs_file }}</code> (train accuracy {{ a.train_test.train_accuracy | pct }})</td>
<td>{{ a.train_test.threshold | num }}</td><td>{{ a.train_test.accuracy | pct }}</td></tr>{% endif %}
<tr><td class="l">candor's default threshold</td><td>{{ a.at_default_threshold.threshold }}</td>
<td>{{ a.at_default_threshold.accuracy | pct }}</td></tr>
<tr><td class="l">best threshold on these pairs (optimistic)</td><td>{{ a.best_threshold_on_these_pairs.threshold | num }}</td>
<td>{{ a.best_threshold_on_these_pairs.accuracy | pct }}</td></tr></table>
{% for name, block in blocks %}
<h2>{{ name }}</h2>
<p class="note">{{ block.genuine_pairs | num }} same-person and {{ block.impostor_pairs | num }}
different-person pairs. {{ block.note or "" }}</p>
<table><tr><th class="l">AUC</th><td>{{ "%.5f" | format(block.auc) }}</td>
<th class="l">EER</th><td>{{ block.eer.eer | pct }} at Similarity {{ block.eer.threshold | num }}</td></tr></table>
<table><tr><th>FAR (FMR)</th><th>TAR</th><th>at Similarity</th><th class="l">note</th></tr>
{% for r in block.tar_at_far %}<tr><td>{{ r.far | rate }}</td><td>{{ r.tar | pct }}</td>
<td>{{ r.threshold | num }}</td><td class="l">{{ r.note or "" }}</td></tr>{% endfor %}</table>
<table><tr><th>Similarity ≥</th><th>FMR</th><th>false matches</th><th>95% interval</th>
<th>FNMR</th><th>false non-matches</th><th>95% interval</th></tr>
{% for r in block.at_threshold %}<tr><td>{{ r.threshold | num(0) }}</td><td>{{ r.fmr | rate }}</td>
<td>{{ r.false_matches | num }}</td><td>{{ (r.fmr_bootstrap_ci or r.fmr_ci) | ci }}</td>
<td>{{ r.fnmr | pct }}</td><td>{{ r.false_non_matches | num }}</td>
<td>{{ (r.fnmr_bootstrap_ci or r.fnmr_ci) | ci('pct') }}</td></tr>{% endfor %}</table>
{% endfor %}
<h2>Curves</h2>
<img src="{{ figs.curves }}" alt="ROC and DET curves">
{% for alt, src in figs.hists %}<img src="{{ src }}" alt="{{ alt }}">{% endfor %}
"""

CALIBRATION = """
<p>Similarity S is defined to mean a false match rate of about F(S):
{% for s, f in d.table.anchors.items() %}<b>{{ s }}</b> → {{ f | rate }}{{ ", " if not loop.last }}{% endfor %}
 (rate scale: {{ d.table.rate_scale }}). The table below maps scores to Similarity so that this
holds on the reference set{{ "s" if d.reference|length > 1 }}
({{ d.table.combine }} over sets: {{ combine_note }}).</p>
<h2>Reference sets (fitted on)</h2>
<table><tr><th>#</th><th class="l">set</th><th>photos</th><th>no face</th><th>people</th>
<th>same-person pairs</th><th>different-person pairs</th><th>lowest measurable FMR</th></tr>
{% for r in d.reference %}<tr><td>{{ loop.index }}</td><td class="l"><code>{{ r.source }}</code></td><td>{{ r.photos | num }}</td>
<td>{{ r.photos_without_face | num }}</td><td>{{ r.people | num }}</td><td>{{ r.genuine_pairs | num }}</td>
<td>{{ r.impostor_pairs | num }}</td><td>{{ r.lowest_measurable_fmr | rate }}</td></tr>{% endfor %}</table>
<h2>Check: promised vs measured</h2>
<p class="note">Sets marked <i>held out</i> were not used to fit the table: the honest test.
Ratio = measured / promised; the acceptance band is a factor of 3. With <code>max</code>, a
reference set other than the one that sets a threshold is expected to measure lower than
promised ("about F(S) or lower").</p>
{% for c in d.checks %}
<h3>{{ c.name | short }} {% if c.held_out %}<i>(held out)</i>{% else %}<i>(fitted on)</i>{% endif %}
 – {{ c.impostor_pairs | num }} different-person pairs, {{ c.genuine_pairs | num }} same-person</h3>
<table><tr><th>Similarity ≥</th><th>promised FMR</th><th>measured FMR</th><th>false matches</th>
<th>95% interval</th><th>ratio</th><th>within 3×</th><th>FNMR</th></tr>
{% for r in c.rows %}<tr><td>{{ r.similarity }}</td><td>{{ r.promised_fmr | rate }}</td>
<td>{{ r.fmr | rate }}</td><td>{{ r.false_matches | num }}</td><td>{{ (r.fmr_bootstrap_ci or r.fmr_ci) | ci }}</td>
<td>{{ r.ratio | num(2) }}</td>
<td>{% if r.within_factor_3 %}<span class="ok">yes</span>{% else %}<span class="bad">no</span>{% endif %}</td>
<td>{{ r.fnmr | pct }}</td></tr>{% endfor %}</table>
{% endfor %}
<img src="{{ figs.calibration }}" alt="calibration plot">
{% for alt, src in figs.hists %}<img src="{{ src }}" alt="{{ alt }}">{% endfor %}
<h2>The table (every 5 points)</h2>
<table><tr><th>Similarity</th><th>promised FMR</th><th>score ≥</th>
{% for name in d.table.sets %}<th>FMR set {{ loop.index }}</th><th>FNMR set {{ loop.index }}</th>{% endfor %}</tr>
{% for r in rows %}<tr><td>{{ r.similarity }}</td><td>{{ r.fmr | rate }}</td><td>{{ "%.5f" | format(r.score) }}</td>
{% for name in d.table.sets %}<td>{{ r.sets[name].fmr | rate }}</td><td>{{ r.sets[name].fnmr | pct }}</td>{% endfor %}</tr>
{% endfor %}</table>
"""

FAIRNESS = """
<p>{{ d.photos | num }} photos of {{ d.people | num }} people from <code>{{ d.source }}</code>;
{{ d.photos_without_face | num }} without a detected face.
{% if not d.has_genuine_pairs %}The labels name no person twice (every photo is taken to be a
different person), so only impostor (different-person) error rates can be measured: FMR, not
FNMR.{% endif %}
Impostor pairs are formed <b>within</b> each group, as NIST FRVT does: false matches happen
between people who look alike, and demographic groups share traits.</p>
{% for spec, g in groupings %}
<h2>By {{ spec }}</h2>
<img src="{{ figs[spec].detection }}" alt="detection rate by {{ spec }}">
<table><tr><th class="l">group</th><th>photos</th><th>detected</th><th>95% interval</th>
<th>impostor pairs</th><th>median Similarity</th><th>99.9th pct</th>
{% for t in d.thresholds %}<th>FMR @ {{ t | num(0) }}</th>{% endfor %}
{% if g.has_fnmr %}{% for t in d.thresholds %}<th>FNMR @ {{ t | num(0) }}</th>{% endfor %}{% endif %}</tr>
{% for r in g.groups %}<tr><td class="l">{{ r.group }}</td><td>{{ r.photos | num }}</td>
<td>{{ r.detection_rate | pct(1) }}</td><td>{{ r.detection_ci | ci('pct') }}</td>
<td>{{ r.impostor_pairs | num }}</td>
<td>{{ r.impostor_similarity["q0.5"] | num(1) if r.impostor_similarity else "–" }}</td>
<td>{{ r.impostor_similarity["q0.999"] | num(1) if r.impostor_similarity else "–" }}</td>
{% for f in r.fmr or [] %}<td>{{ f.fmr | rate }}<br><small>{{ f.ci | ci }}</small></td>{% endfor %}
{% if g.has_fnmr %}{% for f in r.fnmr or [] %}<td>{{ f.fnmr | pct }}<br><small>{{ f.ci | ci('pct') }}</small></td>{% endfor %}{% endif %}
</tr>{% endfor %}</table>
<img src="{{ figs[spec].fmr }}" alt="FMR by {{ spec }}">
{% if figs[spec].fnmr %}<img src="{{ figs[spec].fnmr }}" alt="FNMR by {{ spec }}">{% endif %}
<h3>Differentials across {{ spec }} groups</h3>
<table><tr><th>Similarity ≥</th><th>promised FMR</th><th>highest group FMR</th><th class="l">group</th>
<th>lowest</th><th class="l">group</th><th>max / min</th><th>95% interval</th>
<th>max / geomean</th><th>95% interval</th></tr>
{% for r in g.differentials %}<tr><td>{{ r.threshold | num(0) }}</td><td>{{ r.promised_fmr | rate }}</td>
<td>{{ r.fmr.max | rate }}</td><td class="l">{{ r.fmr.highest_group }}</td>
<td>{{ r.fmr.min | rate }}</td><td class="l">{{ r.fmr.lowest_group }}</td>
<td>{{ r.fmr.max_over_min | num(1) if r.fmr.max_over_min is not none else "∞ (a group at 0)" }}</td>
<td>{{ r.fmr.max_over_min_interval | ci('ratio') }}</td>
<td>{{ r.fmr.max_over_geomean | num(1) if r.fmr.max_over_geomean is not none else "∞ (a group at 0)" }}</td>
<td>{{ r.fmr.max_over_geomean_interval | ci('ratio') }}</td></tr>{% endfor %}</table>
<p>Detection: highest {{ g.detection.highest | pct(1) }} ({{ g.detection.highest_group }}),
lowest {{ g.detection.lowest | pct(1) }} ({{ g.detection.lowest_group }}): a spread of
<b>{{ g.detection.spread_points | num(1) }} points</b>.</p>
<p>Threshold guidance: the lowest Similarity that keeps <i>every</i> {{ spec }} group's FMR at or below
{% for f, v in g.guidance.items() %}<b>{{ f }}</b>: {% if v %}{{ v.similarity | num(1) }} (set by {{ v.set_by_group }}){% else %}not measurable here{% endif %}{{ "; " if not loop.last else "." }}{% endfor %}</p>
<img src="{{ figs[spec].dist }}" alt="impostor Similarity by {{ spec }}">
{% endfor %}
"""
