"""Sentences to validate an export on when no data is given: real financial text of varied length.

Shipped in the package so an installed finsight can validate without examples/: very short
phrases, headlines from examples/headlines.csv, and multi-sentence filing excerpts from
examples/filings.jsonl that run past max_length (so truncation is exercised too).
"""

SAMPLE_SENTENCES: tuple[str, ...] = (
    "Shares fell.",
    "Profit rose.",
    "No change.",
    "Guidance cut",
    "Dividend raised.",
    "Sales flat",
    "Q3 beat.",
    "Losses widen.",
    "Export sales soared thanks to new distribution agreements in Latin America.",
    "The restaurant chain reported falling traffic and lowered its same-store sales forecast.",
    "The stock split will take effect after the close of trading on March 6.",
    "The group posted a wider-than-expected loss and scrapped its medium-term targets.",
    "The company manufactures industrial pumps and valves for the water treatment sector.",
    "Profit at the café operator fell 19% as coffee bean costs rose sharply.",
    "Product returns surged after widespread complaints about battery defects.",
    "Net debt fell by a third during the year, strengthening the balance sheet considerably.",
    "The retailer reported disappointing holiday sales and warned of further store closures.",
    "The company breached a covenant on its term loan and is negotiating with lenders.",
    "The group owns and operates 37 hotels, mainly in Southern Europe.",
    "An upbeat forecast for 2026 sent the shares to their best day in more than two years.",
    "Trading in the new shares is scheduled to begin on the main market on Monday.",
    "Free cash flow turned negative, forcing the company to draw on its credit facility.",
    "Revenue missed forecasts and the company lowered its long-term margin target.",
    "The company wrote down goodwill of EUR 450 million related to its ill-fated acquisition.",
    "The shareholder register will be closed from March 14 to March 18.",
    "The company's cash reserves dwindled to $18 million, enough for only two more quarters.",
    "The insurer's combined ratio improved markedly, driving a 40% rise in underwriting profit.",
    "The conference call will be held in English, and a replay will be available afterwards.",
    "Cost-cutting efforts failed to offset falling volumes, and operating income declined 27%.",
    "The company has not commented on the market rumors.",
    "The chairman is also a member of the audit and remuneration committees.",
    "Voting results from the annual meeting will be posted within four business days.",
    "The software maker beat expectations on every key metric and lifted its annual targets.",
    "The trial is expected to enroll about 800 patients at sites in North America and Europe.",
    "The airline returned to profitability as passenger traffic recovered strongly.",
    "Early adoption of the new platform exceeded internal targets by roughly 40%.",
    "The board appointed a new independent non-executive director, effective March 1.",
    "Order intake grew strongly, supported by several large contract wins in the Nordics.",
    "The company's fiscal year ends on December 31.",
    "The group's operations are divided into three segments: industrial, consumer, and services.",
    "The lender reported a sharp drop in bad loans and raised its return-on-equity target.",
    "Analysts downgraded the stock to \"sell\", warning that margins will remain under pressure.",
    "The firm's market share increased for the eighth consecutive quarter.",
    "The shipping firm cut its profit forecast as freight rates collapsed.",
    "The dividend will be paid to shareholders registered on the record date of March 20.",
    "The bond matures in 2031 and carries a fixed coupon of 4.25%.",
    "The telecom lost 260,000 subscribers to cheaper rivals during the quarter.",
    "Revenue from cloud services surpassed $1 billion for the first time in a single quarter.",
    "Solid execution and disciplined pricing drove a significant improvement in profitability.",
    "The stock slid 9% after the company unexpectedly cut its dividend by half.",
    "René Dubois, head of the French subsidiary, will join the group's executive committee.",
    ("The drugmaker's lead candidate met its primary endpoint in a late-stage trial, sending "
     "shares sharply higher."),
    "The telecom added 410,000 new subscribers, far more than analysts had anticipated.",
    "Strong trading volumes lifted brokerage commissions to their highest level since 2021.",
    "Analysts at two brokerages upgraded the stock to \"buy\", citing strong margin expansion.",
    "Shareholders can vote electronically, by mail, or in person at the meeting.",
    "Customer retention improved to 96%, and average revenue per user rose 8%.",
    "The chipmaker's products are used in cars, industrial equipment and consumer electronics.",
    "The nominating committee proposes that the current chairman be re-elected.",
    "Bookings rose 27% on the year, giving management strong visibility into next year's revenue.",
    "The acquisition is expected to be accretive to earnings per share within the first year.",
    "Customers cancelled orders worth $140 million after repeated delivery failures.",
    "Regulators opened an investigation into the company's accounting practices.",
    "The company sells its products under four brand names.",
    "The retailer operates 412 stores, of which 150 are franchised.",
    "Short sellers accused the firm of inflating revenue, and the shares fell sharply.",
    "The company said it will close three factories and cut 600 jobs in Germany.",
    ("The firm completed its turnaround, posting positive operating cash flow for four "
     "consecutive quarters."),
    "The CEO's contract has been extended for another three years on unchanged terms.",
    "The group employs around 2,100 people in research and development.",
    "The company plans to publish its sustainability report alongside the annual report.",
    "The group said profitability improved in all business segments during the period.",
    "The miner increased production guidance after commissioning its new processing plant early.",
    "The company expects earnings growth to accelerate next year as new capacity comes online.",
    "Margins expanded sharply as the shift to higher-value services paid off.",
    "The investor presentation will be available for download after the call.",
    "The merger collapsed after antitrust authorities moved to block the deal.",
    "The company reports its results in three geographic regions: Americas, EMEA and Asia-Pacific.",
    "Online sales grew 35%, and profitability in the e-commerce channel improved markedly.",
    ("The firm holds a 35% interest in the offshore field, with the remaining stake held by "
     "two partners."),
    ("Management announced a $500 million share buyback program, signaling confidence in the "
     "outlook."),
    "The company lost its exclusive distribution agreement, threatening a key revenue stream.",
    "The company won a major government tender, the biggest contract in its history.",
    ("The stock rallied after the company reported earnings well above the top of its guidance"
     " range."),
    "The registration statement has been filed with the Securities and Exchange Commission.",
    "The company said the change in accounting method will not affect reported cash flow.",
    "The company's new warehouse covers approximately 40,000 square meters.",
    "Gross margin deteriorated for the fourth quarter in a row on aggressive discounting.",
    "The software is available in 22 languages and supports both desktop and mobile devices.",
    "The transport operator won a ten-year rail franchise, beating three rival bidders.",
    "Operating margin contracted to 4.1% from 9.6% as input costs soared.",
    "The firm provides cloud-based payroll services to small and medium-sized businesses.",
    "A data breach exposed the personal information of millions of customers, triggering lawsuits.",
    "The company designs software used by hospitals to schedule staff and manage patient records.",
    "The stock sank to a five-year low after the company withdrew its outlook.",
    "Losses widened as the firm continued to spend heavily on an unprofitable expansion.",
    "The firm's fiscal year runs from July 1 to June 30.",
    "The semiconductor firm posted record quarterly revenue on booming demand for AI accelerators.",
    "Competition intensified, and the firm's market share slipped for the fifth straight quarter.",
    "The company's Stockholm office will be closed during the holiday period.",
    "The chief financial officer will present at an industry conference in London next month.",
    "The shipping firm lifted its profit forecast as freight rates climbed sharply.",
    "Sales for the period were in line with the figures the company published last month.",
    "The firm was founded in 1987 and is headquartered in Toronto.",
    "The bank's capital ratio fell below the regulatory minimum, forcing an emergency share sale.",
    "The merger agreement was signed by both parties on Tuesday.",
    "The firm's research center employs about 300 engineers and scientists.",
    "Net interest income rose faster than expected, powering a record annual profit for the bank.",
    ("Acme Industrial Holdings Inc. reported record results for Q4 2025. Revenue increased "
     "14.2% to $812.5 million, compared with $711.6 million in the prior-year period. "
     "Operating margin expanded to 17.3%, driven by pricing discipline and lower freight "
     "costs. Demand from U.S. municipal customers, e.g. water utilities and irrigation "
     "districts, remained exceptionally strong. The board approved a quarterly dividend of "
     "$0.42 per share, an increase of approx. 11%. Management raised its fiscal 2026 EPS "
     "guidance to a range of $6.10 to $6.35. \"We enter the new year with a record backlog and "
     "a healthy balance sheet,\" said the Chief Executive Officer."),
    ("North Ridge Energy Corp. reported a net loss of $94.1 million for Q3 2025, compared with"
     " net income of $12.8 million a year ago. Production averaged approx. 41,200 barrels of "
     "oil equivalent per day, down 9.6% from the prior quarter. Realized natural gas prices "
     "fell sharply, and unplanned maintenance at two U.S. facilities further reduced output. "
     "The company recorded a non-cash impairment of $61.0 million on its Permian assets. "
     "Liquidity declined to $148 million at quarter end. Management has suspended the dividend"
     " and withdrawn its full-year guidance. The company is in discussions with its lenders "
     "regarding an amendment to its credit agreement."),
    ("Voltrix Systems AG generated revenue of EUR 1.2 billion in fiscal 2025, an increase of "
     "3.5% compared with the prior year. Growth in the automation segment, e.g. robotics "
     "controllers and drive systems, offset continued weakness in consumer electronics. "
     "However, EBIT declined to EUR 96.4 million from EUR 118.7 million due to higher "
     "personnel costs and restructuring expenses of EUR 14.9 million. Order intake rose 6.1% "
     "in Q4 2025, and the book-to-bill ratio stood at 1.08. The Executive Board expects "
     "revenue growth of 2-4% in fiscal 2026 but anticipates continued margin pressure in the "
     "first half. The proposed dividend of EUR 0.85 per share is unchanged from the prior "
     "year."),
    ("Bravo Brands Inc. delivered another strong quarter. Comparable restaurant sales rose "
     "8.4%, reflecting higher guest traffic and a successful limited-time menu. Total revenue "
     "grew 16% to $436.2 million, and restaurant-level margin improved by 190 basis points to "
     "19.8%. The company opened 27 new locations in the U.S. and Canada, bringing the system "
     "total to approx. 1,140 restaurants. Net income increased to $38.9 million, or $0.91 per "
     "diluted share. Reflecting its confidence, the board authorized an additional $150 "
     "million share repurchase program and raised full-year guidance for comparable sales "
     "growth to 6-7%."),
    ("Kestrel Financial Group Inc. reported net income of $22.4 million for Q4 2025, down 61% "
     "from $57.6 million in Q4 2024. The provision for credit losses rose to $88.0 million, "
     "reflecting deterioration in the commercial real estate portfolio, e.g. office loans in "
     "several large U.S. metro areas. Non-performing assets increased to 1.94% of total assets"
     " from 0.71% a year earlier. Net interest margin compressed by 22 basis points to 2.87% "
     "as deposit costs continued to climb. The CET1 ratio declined to 9.6%, approaching the "
     "bank's internal minimum. Management expects elevated charge-offs to persist through at "
     "least mid-2026 and has paused share repurchases."),
    ("Meridian Pharmaceuticals Inc. announced topline results from its Phase 3 MERIT-2 study. "
     "The trial met its primary endpoint, with a 3.5% absolute reduction in major "
     "cardiovascular events versus placebo (p = 0.02). However, the key secondary endpoint of "
     "all-cause mortality did not reach statistical significance. Rates of serious adverse "
     "events were similar across arms, approx. 11.2% vs. 10.8%. The company intends to submit "
     "a marketing application to the U.S. FDA in Q3 2026, although analysts cautioned that the"
     " label may be narrower than originally hoped. Cash and equivalents stood at $612 "
     "million, which management believes is sufficient to fund operations into 2028. Research "
     "and development expenses rose 24% year over year."),
    ("Management's Discussion and Analysis. Quanta Logistics Inc. (the \"Company\") operates "
     "freight forwarding, contract warehousing and last-mile delivery businesses in North "
     "America and Europe. Consolidated revenue for fiscal 2025 was $3.48 billion, a decrease "
     "of 4.1% compared with $3.63 billion in fiscal 2024. The decline was primarily "
     "attributable to lower ocean and air freight rates, which fell by approx. 18% on average "
     "during the year, partially offset by volume growth in contract warehousing. Freight "
     "forwarding revenue declined 15.7% to $1.41 billion, and segment operating margin "
     "contracted to 3.2% from 5.9%. By contrast, contract warehousing revenue grew 9.3% to "
     "$1.52 billion, supported by new multi-year agreements with retail and healthcare "
     "customers, e.g. a national pharmacy chain and two U.S. hospital networks. Warehousing "
     "segment margin improved to 11.4%, its highest level since the segment was formed. "
     "Last-mile delivery revenue was broadly flat at $552 million; the segment remained "
     "loss-making, with an operating loss of $21.7 million compared with $29.3 million in the "
     "prior year. European operations, which are managed from the Company's subsidiary Quanta "
     "Europe B.V. in Rotterdam, generated revenue of EUR 612.4 million, an increase of 2.2% in"
     " constant currency. Selling, general and administrative expenses decreased 3.8%, "
     "reflecting the consolidation of 14 regional offices and a reduction in headcount of "
     "approx. 650 positions announced in Q2 2025. The Company recorded restructuring charges "
     "of $34.5 million in connection with these actions, of which $9.1 million remained "
     "accrued at year end. Adjusted EBITDA was $318 million, or 9.1% of revenue, compared with"
     " $356 million, or 9.8% of revenue, in the prior year. Net income was $71.6 million, or "
     "$1.64 per diluted share, compared with $102.3 million, or $2.29 per diluted share. Cash "
     "flow from operations remained solid at $246 million, and the Company reduced net debt by"
     " $88 million during the year. As of December 31, 2025, the net leverage ratio was 1.9x, "
     "comfortably within the covenant limit of 3.5x under the Company's senior credit "
     "facility. Capital expenditures of $112 million were directed mainly toward warehouse "
     "automation, including robotic picking systems at three sites. Looking ahead, management "
     "expects freight markets to remain soft in the first half of 2026 but anticipates "
     "continued growth in warehousing. The Company's outlook assumes no material change in "
     "trade policy between the U.S. and its major trading partners; new tariffs, port "
     "disruptions or a sharp rise in fuel prices could adversely affect results. Certain "
     "statements in this section are forward-looking and involve risks and uncertainties, as "
     "described under \"Risk Factors.\""),
    ("Helixon Therapeutics Inc. announced that the European Commission has granted marketing "
     "authorization for Velantra, its once-weekly treatment for a rare metabolic disorder. The"
     " approval follows FDA clearance in the U.S. in Q3 2025 and significantly expands the "
     "addressable patient population. Net product revenue for the quarter reached $128.4 "
     "million, up 73% year over year and well ahead of consensus. Gross margin improved to "
     "88.6% as manufacturing yields increased. The company now expects full-year 2026 product "
     "revenue of approx. $620 million to $660 million, up from previous guidance of $540 "
     "million to $580 million. Helixon also reported its first quarter of positive operating "
     "cash flow. Launch preparations in Germany, France and other major EU markets are well "
     "advanced."),
    ("Prism Retail Group Inc. reported disappointing results for the holiday quarter. "
     "Comparable store sales decreased 6.8%, and e-commerce sales fell 3.1% despite heavier "
     "promotional activity. Gross margin declined 410 basis points to 29.7%, reflecting "
     "elevated markdowns needed to clear excess inventory, e.g. seasonal apparel and home "
     "goods. The company swung to a net loss of $47.2 million, or $0.83 per share. Inventories"
     " at quarter end were still up approx. 12% year over year. Management announced the "
     "closure of 85 underperforming U.S. stores and the elimination of about 1,400 jobs. The "
     "company also lowered its fiscal 2026 outlook and now expects a further decline in "
     "comparable sales. Its revolving credit facility was amended to provide covenant relief "
     "through Q1 2027."),
    ("Tidegard Shipping Ltd. posted revenue of $284.6 million for Q4 2025, broadly in line "
     "with the prior-year period. Container charter rates weakened during the quarter, but the"
     " dry bulk fleet benefited from firmer spot rates, e.g. on Atlantic iron ore routes. "
     "Average time-charter equivalent earnings for the bulk fleet rose 9.2% to $17,450 per "
     "day. Net profit was $41.3 million, compared with $44.0 million a year earlier, as higher"
     " depreciation on newly delivered vessels weighed on earnings. The company took delivery "
     "of two dual-fuel vessels and sold one older ship for a gain of $6.8 million. The board "
     "declared a quarterly dividend of $0.30 per share, unchanged. Management described the "
     "outlook as uncertain, noting both improving bulk demand and persistent overcapacity in "
     "container shipping."),
    ("Cobalt Ridge Mining Inc. achieved record quarterly copper production of 62,800 tonnes, "
     "up 21% on the prior year, as the new concentrator ramped up ahead of plan. All-in "
     "sustaining costs fell to $2.18 per pound, approx. 9% lower than in Q3 2025. Revenue rose"
     " 34% to $941 million, supported by higher realized copper prices and increased volumes. "
     "Net income more than doubled to $214.5 million. The company repaid $300 million of its "
     "term loan early and now has net cash of $185 million. Reflecting the strong balance "
     "sheet, the board increased the quarterly dividend by 25% and raised 2026 production "
     "guidance to 240,000-255,000 tonnes. Output at the Chilean operations also benefited from"
     " improved water supply and higher mill availability."),
    ("Denvera Software Oy reported net sales of €48.3 million for the financial year 2025, a "
     "decrease of 7.9% from the previous year. Recurring revenue grew only 1.2%, while licence"
     " and consulting revenue fell sharply as customers postponed projects. The operating "
     "result was a loss of EUR 6.1 million, compared with a profit of EUR 2.4 million in 2024,"
     " due to weak sales and higher amortization of capitalized development costs. Customer "
     "churn increased to approx. 9%, notably among small public-sector clients. The company "
     "initiated change negotiations that may result in the reduction of up to 80 positions, "
     "i.e. roughly 15% of staff. The Board of Directors proposes that no dividend be paid for "
     "2025. Cash and cash equivalents decreased to EUR 7.9 million, and the company is "
     "evaluating financing alternatives."),
)
