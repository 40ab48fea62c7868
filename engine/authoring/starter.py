"""The files `fnl init` writes: a starter funnel repository that validates, compiles and
simulates as written, with the hook, the CI workflow and the editor settings around it.

`{name}` is the funnel's name, `{repo}` and `{rev}` where fnl is installed from (its git
repository and the commit: `init.source`). Every other brace is the file's own."""
from __future__ import annotations

FUNNEL = """\
# yaml-language-server: $schema=../schemas/funnel.schema.json
#
# {name}: a starter B2B funnel. A guide download starts a nurture sequence; engaged leads in
# the ideal customer profile become MQLs; a reply or a pricing visit makes them SQLs, handed
# to sales with a four-hour SLA while marketing email stops.
#
#   fnl validate funnels/             # schema and lint rules, with the line of every problem
#   fnl simulate funnels/{name}.yaml    # a forecast from funnels/{name}.behavior.yaml
#   fnl render funnels/{name}.yaml --all -o gallery/   # every email, in a browser
fnl: 1
funnel: {name}
description: Guide download, nurture, scoring, MQL and SQL with an SLA, and sales follow-up.
templates: ../templates/{name}

sender:
  from: "Example Co <hello@example.com>"
  postal_address: "Example Co, 1 Main Street, Springfield, USA"
  timezone: America/New_York
  unsubscribe_url: https://example.com/unsubscribe

profile:
  first_name: {{type: string, required: true}}
  company: {{type: string}}
  industry:
    enum: [saas, manufacturing, finance]
    required: true
  employees: {{type: integer, minimum: 1}}
  timezone: {{type: string, format: timezone}}

fit:
  when: "industry in ['saas', 'finance'] and employees >= 50"

stages: [subscriber, mql, sql]
terminal_stages: [sql]

lead_magnets:
  guide:
    kind: ebook
    title: "The starter guide"
    consent: I agree to receive email from Example Co. I can unsubscribe at any time.
    enters: subscriber
    delivers: magnets/guide

scoring:
  events:
    email.opened: 5
    email.clicked: 10
    email.replied: 25
    site.visited: 5
    site.visited.pricing: 20
  decay: {{factor: 0.98, every: 1d}}
  thresholds:
    mql: 20

transitions:
  - from: subscriber
    to: mql
    when: "fit and score >= thresholds.mql and not unsubscribed"
  - from: mql
    to: sql
    when: "(replied or visited('pricing', since='mql')) and not unsubscribed"

sequences:
  nurture:
    kind: nurture
    stage: [subscriber, mql]
    steps:
      - {{wait: 1d, send: nurture/welcome}}
      - {{wait: 3d, send: nurture/case-study, variants: {{a: 50, b: 50}}}}
      - {{wait: 4d, send: nurture/pricing}}
    exit: {{stage_at_least: sql}}

  sales-follow-up:
    kind: sales
    stage: sql
    steps:
      - {{wait: 0d, send: sales/intro}}
      - {{wait: 3d, send: sales/check-in}}
    exit: {{on: [email.replied, email.unsubscribed]}}

handoff:
  sql:
    assign:
      round_robin: [ana@example.com, ben@example.com]
    sla: 4h
    notify: [owner]
    suppress: [nurture, broadcast]

policies:
  frequency_cap: {{max: 3, per: 7d, applies_to: [nurture, broadcast]}}
  quiet_hours: {{from: "20:00", to: "08:00"}}
  timezone_attribute: timezone
"""

BEHAVIOR = """\
# yaml-language-server: $schema=../schemas/behavior.schema.json
#
# How {name}'s leads behave, for `fnl simulate funnels/{name}.yaml`. Replace the figures
# with your own quarter's numbers.
behavior: 1
funnel: {name}
horizon: 120d

arrivals:
  guide:
    per_day: 20
    window: {{start: 0d, end: 90d}}

profile:
  industry:
    weights: {{saas: 50, manufacturing: 30, finance: 20}}
  employees:
    range: {{min: 5, max: 5000}}
    distribution: log_uniform
  timezone:
    weights: {{America/New_York: 50, America/Los_Angeles: 25, Europe/London: 25}}
  company:
    missing: 0.3

email:
  default: {{open: 0.30, click: 0.10, reply: 0.01, unsubscribe: 0.004, bounce: 0.005}}
  by_template:
    magnets/guide: {{open: 0.65, click: 0.45}}
    nurture/case-study:
      variants: {{a: {{click: 0.10}}, b: {{click: 0.13}}}}
    sales/intro: {{open: 0.70, reply: 0.10}}

visits:
  daily: 0.01
  after_click: {{daily: 0.08, for: 7d}}
  pages: {{pricing: 0.25}}

timing:
  day: spread
  hours: {{from: "08:00", to: "18:30"}}
  delays:
    open: {{mean: 5h, max: 4d}}
    click: {{mean: 2m, max: 1h}}
    reply: {{mean: 4h, max: 3d}}

crm:
  first-call:
    after: sql
    outcomes:
      crm.demo_booked: {{probability: 0.5, delay: {{mean: 3h, max: 2d}}}}

sales:
  reps:
    ana@example.com: 10
    ben@example.com: 10
"""

EXPECT = """\
# yaml-language-server: $schema=../schemas/expect.schema.json
#
# CI gates on {name}'s forecast: `fnl simulate` fails when one does not hold.
funnel: {name}
expect:
  - sql_rate >= 0.005
  - max_marketing_emails_in_7d <= 3
  - no_marketing_to_open_opportunities
"""

FOOTER_HTML = """\
<hr>
<p style="font-size:12px;color:#6b7280">{{{{ sender.postal_address }}}}<br>
<a href="{{{{ unsubscribe_url }}}}">Unsubscribe</a> with one click.</p>
"""

FOOTER_TEXT = """\
--
{{{{ sender.postal_address }}}}
Unsubscribe with one click: {{{{ unsubscribe_url }}}}
"""


def _email(subject: str, preheader: str, paragraphs: list, link: str, sign: str = "The Example Co team") -> str:
    html = "\n".join(f"<p>{p}</p>" for p in paragraphs)
    text = "\n\n".join(paragraphs)
    return (f"{{% block subject %}}{subject}{{% endblock %}}\n"
            f"{{% block preheader %}}{preheader}{{% endblock %}}\n"
            "{% block html -%}\n<p>Hi {{ lead.first_name }},</p>\n"
            f"{html}\n<p><a href=\"{link}\">{link}</a></p>\n<p>{sign}</p>\n"
            '{% include "_partials/footer.html.j2" %}\n{%- endblock %}\n'
            "{% block text -%}\nHi {{ lead.first_name }},\n\n"
            f"{text}\n\n{link}\n\n{sign}\n\n"
            '{% include "_partials/footer.txt.j2" %}\n{%- endblock %}\n').replace("{", "{{").replace("}", "}}")


EMAILS = {
    "magnets/guide": _email("Your starter guide", "Chapter 2 is the ten-minute version.",
                            ["Thanks for downloading the guide. If you read one part, make it chapter 2."],
                            "https://example.com/guide.pdf"),
    "nurture/welcome": _email("Three ways teams use the guide", "From the first week to the first result.",
                              ["Most teams start with one report, then add the alerts that matter to them."],
                              "https://example.com/blog/first-week"),
    "nurture/case-study": (
        "{{% block subject %}}{{% if variant == 'b' %}}How one team cut churn 18%{{% else %}}"
        "A customer story{{% endif %}}{{% endblock %}}\n"
        "{{% block html -%}}\n<p>Hi {{{{ lead.first_name }}}},</p>\n"
        "<p>A 400-person SaaS company saw churn coming 60 days early. Here is what they changed.</p>\n"
        "<p><a href=\"https://example.com/customers/story\">Read the story</a></p>\n"
        "{{% include \"_partials/footer.html.j2\" %}}\n{{%- endblock %}}\n"
        "{{% block text -%}}\nHi {{{{ lead.first_name }}}},\n\n"
        "A 400-person SaaS company saw churn coming 60 days early. Here is what they changed:\n"
        "https://example.com/customers/story\n\n{{% include \"_partials/footer.txt.j2\" %}}\n{{%- endblock %}}\n"),
    "nurture/pricing": _email("What it costs, and what it saves", "Plans for teams of every size.",
                              ["Pricing is per team, not per seat, so the whole team can use it."],
                              "https://example.com/pricing"),
    "sales/intro": _email("A quick hello from your account team", "Fifteen minutes, on your calendar.",
                          ["I look after teams like yours. Would fifteen minutes this week help?"],
                          "https://example.com/book", sign="Ana, Example Co"),
    "sales/check-in": _email("Any questions I can answer?", "Happy to help either way.",
                             ["Checking in on my note from earlier this week."],
                             "https://example.com/book", sign="Ana, Example Co"),
}

PRE_COMMIT = """\
# fnl checks every definition, section and template before each commit.
# fnl is installed from its git repository at the commit below (`pre-commit autoupdate`
# moves it to the newest tag).
repos:
  - repo: {repo}
    rev: {rev}
    hooks:
      - id: fnl-validate
"""

WORKFLOW = """\
# fnl in pull requests: validate with annotations and SARIF, and post one comment with what
# the change does (the plan diff, the funnel graph and the forecast against the base branch).
name: fnl

on:
  pull_request:
    paths: ["funnels/**", "templates/**"]

permissions:
  contents: read
  pull-requests: write
  security-events: write

jobs:
  fnl:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          fetch-depth: 0
      - uses: actions/setup-python@v5
        with:
          python-version: "3.12"
      # fnl is installed from its git repository, at the commit `fnl init` was run with.
      - run: pip install "fnl @ git+{repo}@{rev}"
      - name: Validate (annotations on the pull request)
        run: fnl validate funnels/ --format github
      - name: Validate (SARIF, for code scanning)
        if: always()
        run: fnl validate funnels/ --format sarif > fnl.sarif || true
      - uses: github/codeql-action/upload-sarif@v3
        if: always()
        with:
          sarif_file: fnl.sarif
          category: fnl
      - name: Report
        run: fnl report --base "origin/${{{{ github.base_ref }}}}" funnels/ > fnl-report.md
      - name: Comment on the pull request (its earlier comment edited, if there is one)
        env:
          GH_TOKEN: ${{{{ github.token }}}}
          PR: ${{{{ github.event.pull_request.number }}}}
        run: |
          gh pr comment "$PR" --body-file fnl-report.md --edit-last \
            || gh pr comment "$PR" --body-file fnl-report.md
"""

# Only patterns that cannot overlap: every definition file fnl init writes names its own
# schema on its first line (yaml-language-server reads that first), and so should a file
# you add (a section of a split definition: `../../schemas/section.schema.json`).
VSCODE_SETTINGS = """\
{{
  "yaml.schemas": {{
    "./schemas/funnel.schema.json": ["funnels/*/funnel.yaml"],
    "./schemas/behavior.schema.json": ["funnels/**/*.behavior.yaml"],
    "./schemas/expect.schema.json": ["funnels/**/*.expect.yaml"]
  }},
  "files.associations": {{"*.j2": "jinja-html"}}
}}
"""

VSCODE_EXTENSIONS = """\
{{
  "recommendations": ["redhat.vscode-yaml"]
}}
"""

GITIGNORE = """\
.venv/
gallery/
*.html
fnl.sarif
fnl-report.md
"""

README = """\
# {name}

A B2B email funnel as code, checked and forecast by fnl.

- `funnels/{name}.yaml`: the funnel; `templates/{name}/`: its emails.
- `funnels/{name}.behavior.yaml`: how its leads behave, for forecasts;
  `funnels/{name}.expect.yaml`: the forecast's CI gates.

```sh
pip install "fnl @ git+{repo}@{rev}"
pre-commit install                                  # fnl validate before each commit
fnl validate funnels/
fnl simulate funnels/{name}.yaml
fnl render funnels/{name}.yaml --all -o gallery/    # every email, in a browser
```

Pull requests get annotations, a SARIF upload and one comment with the plan diff, the
funnel's graph and the forecast against the base branch (`.github/workflows/fnl.yml`).
Editors: VS Code with the YAML extension reads `.vscode/settings.json`; every definition
names its schema on its first line for any editor with yaml-language-server.
"""
